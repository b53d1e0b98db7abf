"""Which gang a pod belongs to, how many members must be placed together, where they may go, and how
long a plan may wait for its members (the TTL).

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
PodGroup object, which the scheduler watches itself (scheduler.gang.podgroups); until that object is
known the pod waits with a reason naming what is missing instead of starting a partial gang.

Per source (minimum; TTL): gpuplace keys (the annotation; `plan_ttl_seconds`), Kueue (total-count;
`plan_ttl_seconds`), scheduler-plugins (minMember; scheduleTimeoutSeconds, else 60 s), Volcano
(minMember; `plan_ttl_seconds`), scheduling.k8s.io/v1alpha2 (gang.minCount; 300 s, the native Permit's).
A pod the webhook labelled keeps the webhook's minimum and takes the TTL of the PodGroup it names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from placement_core.gangplan import Level
from scheduler.gang.podgroups import NATIVE, PLUGINS, VOLCANO, Ref
from scheduler.settings import GangSettings
from scheduler.wire import Pod

if TYPE_CHECKING:
    from scheduler.gang.podgroups import PodGroupCache

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
    ttl: float | None = None  # None: plan_ttl_seconds
    declared_min: int | None = None  # what the pod states (the PodGroup is used when this is None)
    podgroups: tuple[Ref, ...] = ()  # the PodGroup objects the pod names, in the webhook's order

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


def _refs(pod: Pod) -> tuple[Ref, ...]:
    ns, ann, labels = pod.metadata.namespace, pod.metadata.annotations, pod.metadata.labels
    out = []
    if pod.spec.scheduling_group and pod.spec.scheduling_group.pod_group_name:
        out.append((NATIVE, ns, pod.spec.scheduling_group.pod_group_name))
    if ann.get(VOLCANO_NAME):
        out.append((VOLCANO, ns, ann[VOLCANO_NAME]))
    if labels.get(PLUGINS_NAME):
        out.append((PLUGINS, ns, labels[PLUGINS_NAME]))
    return tuple(out)


_SOURCE = {NATIVE: "spec.schedulingGroup.podGroupName", VOLCANO: f"annotation {VOLCANO_NAME}",
           PLUGINS: f"label {PLUGINS_NAME}"}  # fmt: skip


def gang_of(pod: Pod, settings: GangSettings, podgroups: PodGroupCache | None = None) -> GangId | None:
    """The pod's gang, or None for a pod that is placed on its own. Raises GangIdentityError.
    `podgroups`: the watched PodGroup objects (None: not read, the pod's own keys only)."""
    labels, ann, ns = pod.metadata.labels, pod.metadata.annotations, pod.metadata.namespace
    refs = _refs(pod)
    name = labels.get(settings.label)
    if name:
        raw = ann.get(settings.min_member_annotation)
        size = _positive(raw, f"annotation {settings.min_member_annotation}") if raw is not None else None
        missing = "" if size else f"annotation {settings.min_member_annotation} is missing"
        gid = GangId(
            ns, name, size, _topology(pod, settings), f"label {settings.label}", missing, None, size, refs
        )
        return resolve(gid, podgroups)
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
        size = _positive(raw, f"annotation {KUEUE_TOTAL}")
        return GangId(ns, kueue, size, _topology(pod, settings), f"label {KUEUE_NAME}", declared_min=size)
    if not refs:
        return None
    missing = f"its size is in a PodGroup object the webhook did not resolve (no {settings.min_member_annotation} annotation)"
    gid = GangId(ns, refs[0][2], None, _topology(pod, settings), _SOURCE[refs[0][0]], missing, podgroups=refs)
    return resolve(gid, podgroups)


def resolve(gid: GangId, podgroups: PodGroupCache | None) -> GangId | None:
    """`gid` with what its PodGroup objects say: the TTL, and the minimum when the pod states none.
    None: the 1.36 PodGroup it names has the `basic` policy (no gang) and the pod states no size."""
    if podgroups is None or not gid.podgroups:
        return gid
    for ref in gid.podgroups:
        group = podgroups.get(ref)
        if group is None:
            continue
        if gid.declared_min is not None:
            return replace(gid, ttl=group.ttl)
        if not group.gang:
            return None
        return replace(
            gid, min_member=group.min_member, ttl=group.ttl, source=group.source, missing=group.problem
        )
    if gid.declared_min is not None:
        return replace(gid, ttl=None)
    return replace(gid, min_member=None, ttl=None, missing=podgroups.why_missing(gid.podgroups[0]))
