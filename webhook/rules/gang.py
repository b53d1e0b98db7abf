"""Rule 3: pods of a multi-pod job get a gang name label and a gang size annotation.

Why: gpuplace's scheduler places a gang all-or-nothing, which avoids the partial gangs users of other
schedulers suffer (some members running, the rest pending forever). It needs every member to say the same
two things: `scheduling.x-k8s.io/pod-group=<name>` and `gpuplace.io/gang-size=<N>` (the number of pods that
must be placed together, like a PodGroup's minMember). Tools already say this in five dialects; this rule
translates them (`gang_declared`) and, when the pod says nothing, asks its owner (`gang_workloads`).

Resolution:
- Name: an existing `scheduling.x-k8s.io/pod-group` label is never overwritten and wins; otherwise the
  first source in the order explicit gpuplace → spec.schedulingGroup → Kueue → Volcano → owner workload.
  A gpuplace gang-name that differs from an existing label is denied (it asks for an overwrite).
- Size: every source that states one (gpuplace gang-size, Kueue total count, owner workload) must agree,
  else the pod is denied naming both sources and values. Only when none states a size is the referenced
  PodGroup object read (its minimum is a fallback, not a second opinion).
- A size with no name is denied (nothing to group by). A name with no size gets the label alone.
"""

from __future__ import annotations

from typing import Any

from webhook.errors import MalformedReviewError
from webhook.owners import Owners
from webhook.rules import Findings
from webhook.rules.gang_declared import CONFLICT, Claim, GangDeclarationError, declared_claims, podgroup_size
from webhook.rules.gang_workloads import workload_claim
from webhook.settings import WebhookSettings


async def apply(
    pod: dict[str, Any], *, namespace: str, settings: WebhookSettings, owners: Owners, findings: Findings
) -> None:
    metadata = pod.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedReviewError("metadata must be an object")
    labels = _string_map(metadata, "labels")
    annotations = _string_map(metadata, "annotations")
    try:
        name, size = await resolve(
            pod, labels, annotations, namespace=namespace, settings=settings, owners=owners
        )
    except GangDeclarationError as denial:
        findings.deny(denial.reason, denial.message)
        return
    if name is None:
        return
    if pod.get("metadata") is None:
        pod["metadata"] = {}
    metadata = pod["metadata"]
    if settings.gang_label not in labels:
        metadata["labels"] = {**labels, settings.gang_label: name}
    if size is not None and settings.gang_size_annotation not in annotations:
        metadata["annotations"] = {**annotations, settings.gang_size_annotation: str(size)}


async def resolve(
    pod: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    *,
    namespace: str,
    settings: WebhookSettings,
    owners: Owners,
) -> tuple[str | None, int | None]:
    """(gang name, gang size) for the pod; raises GangDeclarationError when its declarations contradict."""
    claims, podgroups = declared_claims(pod, labels, annotations, settings)
    workload = await workload_claim(pod, labels, namespace=namespace, owners=owners)
    if workload is not None:
        claims.append(workload)

    existing = labels.get(settings.gang_label)
    explicit = annotations.get(settings.gang_name_annotation)
    if existing and explicit and existing != explicit:
        raise GangDeclarationError(
            CONFLICT,
            f"annotation {settings.gang_name_annotation}={explicit!r} contradicts label "
            f"{settings.gang_label}={existing!r}, which gpuplace never overwrites; make them agree or remove one",
        )
    name = existing or next((claim.name for claim in claims if claim.name), None)

    sized = [claim for claim in claims if claim.size is not None]
    for other in sized[1:]:
        if other.size != sized[0].size:
            raise GangDeclarationError(CONFLICT, _contradiction(name, sized[0], other))
    size = sized[0].size if sized else None
    if size is None and name is not None and podgroups:
        from_podgroup = await podgroup_size(podgroups, namespace=namespace, owners=owners)
        size = from_podgroup.size if from_podgroup is not None else None
    if name is None and size is not None:
        raise GangDeclarationError(
            CONFLICT,
            f"{sized[0].source} gives a gang size but no gang name: set annotation "
            f"{settings.gang_name_annotation} or label {settings.gang_label}",
        )
    return name, size


def _contradiction(name: str | None, first: Claim, second: Claim) -> str:
    gang = f"gang {name!r}" if name else "this pod's gang"
    return (
        f"contradictory sizes for {gang}: {first.source} says {first.size}, "
        f"but {second.source} says {second.size}; make them agree"
    )


def _string_map(metadata: dict[str, Any] | None, key: str) -> dict[str, str]:
    value = metadata.get(key) if metadata is not None else None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedReviewError(f"metadata.{key} must be a map of strings")
    return value
