"""Gang claims a pod declares itself, and the PodGroup objects those declarations point to.

Why separate from owner-derived claims: these need no API read (except the optional PodGroup size) and
are other tools' public conventions, so each is listed here exactly as that tool writes it:

| order | convention | name from | size from |
|---|---|---|---|
| 1 | gpuplace | annotation `gpuplace.io/gang-name` | annotation `gpuplace.io/gang-size` |
| 2 | Kubernetes 1.36 Workload API | `spec.schedulingGroup.podGroupName` | PodGroup `scheduling.k8s.io/v1alpha2` `spec.schedulingPolicy.gang.minCount` (read lazily) |
| 3 | Kueue plain pod groups | label `kueue.x-k8s.io/pod-group-name` | annotation `kueue.x-k8s.io/pod-group-total-count` |
| 4 | Volcano | annotation `scheduling.k8s.io/group-name` | PodGroup `scheduling.volcano.sh/v1beta1` `spec.minMember` (read lazily) |
| 5 | scheduler-plugins | label `scheduling.x-k8s.io/pod-group` | PodGroup `scheduling.x-k8s.io/v1alpha1` `spec.minMember` (read lazily) |

PodGroup objects are used only when nothing else states a size: their minCount/minMember is a minimum
that may legitimately be below a workload's total, so it is a fallback, never compared. They are read
only when the pod itself states no size, concurrently with the owner (`gang.resolve`).

These are inputs: gpuplace reads them and never writes them. What it resolved goes under its own keys
(`WebhookSettings.gang_label`, `gang_min_member_annotation`); in particular the scheduler-plugins label
stays the user's, since Coscheduling denies a pod whose label names no PodGroup object.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from webhook.owners import Owners
from webhook.settings import KUEUE_POD_GROUP_LABEL, PLUGINS_POD_GROUP_LABEL, WebhookSettings

KUEUE_NAME_LABEL = KUEUE_POD_GROUP_LABEL
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"

K8S_PODGROUP = "scheduling.k8s.io/v1alpha2"
VOLCANO_PODGROUP = "scheduling.volcano.sh/v1beta1"
PLUGINS_PODGROUP = "scheduling.x-k8s.io/v1alpha1"

_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_INVALID = re.compile(r"[^-A-Za-z0-9_.]")
INVALID_ANNOTATION = "invalid_gang_annotation"
CONFLICT = "gang_conflict"


@dataclass(frozen=True, slots=True)
class Claim:
    """One source's statement about the pod's gang: a name, a size, or both, and where it came from."""

    source: str
    name: str | None = None
    size: int | None = None


class GangDeclarationError(Exception):
    """A gang declaration that cannot be honoured; becomes an admission denial, never escapes the rule."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def to_label_value(name: str) -> str:
    """A valid label value for a derived gang name; long or odd names keep a readable prefix and a hash."""
    if is_label_value(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    prefix = _INVALID.sub("-", name)[:52].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def positive_int(value: object, source: str) -> int:
    """Parse a size from an annotation; anything but a positive decimal integer is a denial."""
    text = value if isinstance(value, str) else ""
    if not (text.isascii() and text.isdecimal()) or int(text) < 1:
        raise GangDeclarationError(INVALID_ANNOTATION, f"{source}={value!r} is not a positive integer")
    return int(text)


def declared_claims(
    pod: dict[str, Any], labels: dict[str, str], annotations: dict[str, str], settings: WebhookSettings
) -> tuple[list[Claim], list[tuple[str, str, str]]]:
    """Claims in the documented order, and (apiVersion, name, source) of PodGroups to read for a size."""
    claims: list[Claim] = []
    podgroups: list[tuple[str, str, str]] = []

    name_key, size_key = settings.gang_name_annotation, settings.gang_size_annotation
    explicit_name = annotations.get(name_key)
    if explicit_name is not None and (not explicit_name or not is_label_value(explicit_name)):
        raise GangDeclarationError(
            INVALID_ANNOTATION,
            f"{name_key}={explicit_name!r} is not a valid label value (at most 63 characters: letters, digits, "
            "'-', '_', '.', starting and ending with a letter or digit)",
        )
    explicit_size = annotations.get(size_key)
    if explicit_name is not None or explicit_size is not None:
        size = positive_int(explicit_size, f"annotation {size_key}") if explicit_size is not None else None
        source = f"annotation {size_key}" if size is not None else f"annotation {name_key}"
        claims.append(Claim(source, explicit_name, size))

    scheduling_group = pod["spec"].get("schedulingGroup")
    group_name = scheduling_group.get("podGroupName") if isinstance(scheduling_group, dict) else None
    if isinstance(group_name, str) and group_name:
        claims.append(Claim("spec.schedulingGroup.podGroupName", to_label_value(group_name)))
        podgroups.append((K8S_PODGROUP, group_name, "spec.schedulingGroup"))

    kueue_name = labels.get(KUEUE_NAME_LABEL)
    if kueue_name:
        count = annotations.get(KUEUE_COUNT_ANNOTATION)
        size = positive_int(count, f"annotation {KUEUE_COUNT_ANNOTATION}") if count is not None else None
        source = f"annotation {KUEUE_COUNT_ANNOTATION}" if size is not None else f"label {KUEUE_NAME_LABEL}"
        claims.append(Claim(source, to_label_value(kueue_name), size))

    volcano_name = annotations.get(VOLCANO_GROUP_ANNOTATION)
    if volcano_name:
        claims.append(Claim(f"annotation {VOLCANO_GROUP_ANNOTATION}", to_label_value(volcano_name)))
        podgroups.append((VOLCANO_PODGROUP, volcano_name, "Volcano"))

    plugins_group = labels.get(PLUGINS_POD_GROUP_LABEL)
    if plugins_group:
        claims.append(Claim(f"label {PLUGINS_POD_GROUP_LABEL}", to_label_value(plugins_group)))
        podgroups.append((PLUGINS_PODGROUP, plugins_group, "scheduler-plugins"))
    return claims, podgroups


async def podgroup_size(
    podgroups: list[tuple[str, str, str]], *, namespace: str, owners: Owners
) -> Claim | None:
    """The first referenced PodGroup object (in the documented order) that states a gang size.

    All referenced PodGroups are read at once: the slowest read bounds the time, not their sum."""
    objects = await asyncio.gather(
        *(owners.get_owner(api_version, "PodGroup", namespace, name) for api_version, name, _ in podgroups)
    )
    for (api_version, name, convention), obj in zip(podgroups, objects, strict=True):
        spec = obj.get("spec") if obj is not None else None
        if not isinstance(spec, dict):
            continue
        if api_version == K8S_PODGROUP:
            policy = spec.get("schedulingPolicy")
            gang = policy.get("gang") if isinstance(policy, dict) else None
            size, field = (
                (gang.get("minCount") if isinstance(gang, dict) else None),
                "schedulingPolicy.gang.minCount",
            )
        else:
            size, field = spec.get("minMember"), "minMember"
        if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
            return Claim(f"{convention} PodGroup {namespace}/{name} ({field} {size})", None, size)
    return None
