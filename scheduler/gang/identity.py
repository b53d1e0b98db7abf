"""Which gang a pod belongs to, how many members must be placed together, and where they may go.

The webhook resolves every convention (gpuplace's own annotations, the 1.36 Workload API
`spec.schedulingGroup`, Kueue, Volcano, scheduler-plugins, and the owning workloads, reading PodGroup
objects where the size lives there) into two keys of gpuplace's own, and the scheduler reads those:

| key | meaning |
|---|---|
| label `gpuplace.io/gang` | the gang name; the gang is (namespace, name) |
| annotation `gpuplace.io/gang-min-member` | how many GPU members must be placed before any binds |
| annotation `gpuplace.io/gang-topology` | `preferred` (default: the smallest domain that fits) or `required-clique`, `required-rack`, `required-zone` |

A pod the webhook did not label (webhook off, or the size unreadable at admission) but that declares a
gang in a foreign convention is still never placed alone: Kueue's plain pod groups state their size on
the pod (`kueue.x-k8s.io/pod-group-total-count`, a total: minimum = total), the others keep it in a
PodGroup object, and such a pod waits with a reason naming what is missing instead of starting a
partial gang.
"""

from __future__ import annotations

from dataclasses import dataclass

from placement_core.gangplan import Level
from scheduler.settings import GangSettings
from scheduler.wire import Pod

TOPOLOGY_ANNOTATION = "gpuplace.io/gang-topology"
KUEUE_NAME = "kueue.x-k8s.io/pod-group-name"
KUEUE_TOTAL = "kueue.x-k8s.io/pod-group-total-count"
VOLCANO_NAME = "scheduling.k8s.io/group-name"
PLUGINS_NAME = "scheduling.x-k8s.io/pod-group"

TOPOLOGIES = {
    "preferred": Level.CLUSTER,
    "required-clique": Level.CLIQUE,
    "required-rack": Level.RACK,
    "required-zone": Level.ZONE,
}


class GangIdentityError(ValueError):
    """A gang key with a value gpuplace cannot use (the pod waits with this message)."""


@dataclass(frozen=True, slots=True)
class GangId:
    namespace: str
    name: str
    min_member: int | None  # None: declared, size unknown (see `missing`)
    max_level: Level
    source: str
    missing: str = ""  # why the size is unknown

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def __str__(self) -> str:
        return self.name if self.namespace == "default" else f"{self.namespace}/{self.name}"


def _positive(value: str, what: str) -> int:
    if not (value.isascii() and value.isdecimal()) or int(value) < 1:
        raise GangIdentityError(f"{what}={value!r} is not a positive integer")
    return int(value)


def _topology(pod: Pod, settings: GangSettings) -> Level:
    value = pod.metadata.annotations.get(TOPOLOGY_ANNOTATION, settings.default_topology)
    level = TOPOLOGIES.get(value)
    if level is None:
        raise GangIdentityError(
            f"annotation {TOPOLOGY_ANNOTATION}={value!r}: use one of {', '.join(TOPOLOGIES)}"
        )
    return level


def gang_of(pod: Pod, settings: GangSettings) -> GangId | None:
    """The pod's gang, or None for a pod that is placed on its own. Raises GangIdentityError."""
    labels, ann, ns = pod.metadata.labels, pod.metadata.annotations, pod.metadata.namespace
    name = labels.get(settings.label)
    if name:
        raw = ann.get(settings.min_member_annotation)
        if raw is None:
            return GangId(
                ns,
                name,
                None,
                _topology(pod, settings),
                f"label {settings.label}",
                f"annotation {settings.min_member_annotation} is missing",
            )
        size = _positive(raw, f"annotation {settings.min_member_annotation}")
        return GangId(ns, name, size, _topology(pod, settings), f"label {settings.label}")
    kueue = labels.get(KUEUE_NAME)
    if kueue:
        raw = ann.get(KUEUE_TOTAL)
        if raw is None:
            return GangId(
                ns,
                kueue,
                None,
                _topology(pod, settings),
                f"label {KUEUE_NAME}",
                f"annotation {KUEUE_TOTAL} is missing",
            )
        return GangId(
            ns,
            kueue,
            _positive(raw, f"annotation {KUEUE_TOTAL}"),
            _topology(pod, settings),
            f"label {KUEUE_NAME}",
        )
    for declared, source in (
        (
            pod.spec.scheduling_group.pod_group_name if pod.spec.scheduling_group else "",
            "spec.schedulingGroup.podGroupName",
        ),
        (ann.get(VOLCANO_NAME, ""), f"annotation {VOLCANO_NAME}"),
        (labels.get(PLUGINS_NAME, ""), f"label {PLUGINS_NAME}"),
    ):
        if declared:
            return GangId(
                ns,
                declared,
                None,
                _topology(pod, settings),
                source,
                f"its size is in a PodGroup object the webhook did not resolve (no "
                f"{settings.min_member_annotation} annotation)",
            )
    return None
