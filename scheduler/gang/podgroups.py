"""PodGroup objects the scheduler reads itself: a gang's minimum size and plan TTL where the size lives
in an object rather than on the pod (the webhook resolves the same objects at admission; this is for
pods it did not label, for PodGroups created after their pods, and for the TTL, which the webhook
never carries).

| API (as served) | pods name it by | minimum | plan TTL |
|---|---|---|---|
| `scheduling.x-k8s.io/v1alpha1` (scheduler-plugins) | label `scheduling.x-k8s.io/pod-group` | `spec.minMember` | `spec.scheduleTimeoutSeconds`, else `plugins_timeout_seconds` (60) |
| `scheduling.volcano.sh/v1beta1` (Volcano) | annotation `scheduling.k8s.io/group-name` | `spec.minMember` | `plan_ttl_seconds` (no timeout in the API) |
| `scheduling.k8s.io/v1alpha2` (Kubernetes 1.36) | `spec.schedulingGroup.podGroupName` | `spec.schedulingPolicy.gang.minCount`; `basic: {}` is no gang | `native_timeout_seconds` (300: no timeout in the API) |

Fields as upstream defines them: scheduler-plugins `apis/scheduling/v1alpha1/types.go` (PodGroupSpec
`MinMember int32 json:"minMember"`, `ScheduleTimeoutSeconds *int32`; unset, Coscheduling waits DefaultWaitTime, 60 s: `pkg/util/podgroup.go`
GetWaitTimeDuration. A 0, which Coscheduling takes as no wait at all, is taken as unset here: a plan
released the moment it is made could never bind), Volcano `volcano-sh/apis
pkg/apis/scheduling/v1beta1/types.go` (PodGroupSpec `MinMember int32`, no timeout field), kubernetes/api
v0.36.3 `scheduling/v1alpha2/types.go` (PodGroupSpec `SchedulingPolicy{Basic, Gang{MinCount int32}}`,
no timeout: the native Permit waits a fixed 5 minutes, GANG.md §2).

Each API is watched only while it is served. A list answered 404 (CRD not installed, or the 1.36 API
group not enabled) or 403 (no RBAC) marks it unserved: its gangs fall back to what the pods state
(the webhook's keys) and otherwise wait with a reason naming the missing API; the list is retried every
`podgroup_recheck_seconds`, so a CRD installed later is picked up without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler.settings import GangSettings

PLUGINS = "scheduling.x-k8s.io/v1alpha1"
VOLCANO = "scheduling.volcano.sh/v1beta1"
NATIVE = "scheduling.k8s.io/v1alpha2"
CONVENTION = {PLUGINS: "scheduler-plugins", VOLCANO: "Volcano", NATIVE: "scheduling.k8s.io/v1alpha2"}


def kind_name(api_version: str) -> str:
    """The watch kind for a PodGroup API ("podgroups.<group>/<version>": scheduler.kubeapi.KubeSource)."""
    return f"podgroups.{api_version}"


KINDS = {kind_name(v): v for v in CONVENTION}

Ref = tuple[str, str, str]  # (apiVersion, namespace, name)


@dataclass(frozen=True, slots=True)
class Group:
    """What a PodGroup object says about its gang."""

    gang: bool  # False: a v1alpha2 PodGroup with the `basic` policy (its pods are placed on their own)
    min_member: int | None  # None: the object states no usable size (see `problem`)
    ttl: float | None  # None: plan_ttl_seconds
    source: str  # "scheduler-plugins PodGroup ml/train (minMember 4)"
    problem: str = ""


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse(api_version: str, obj: dict[str, Any], settings: GangSettings) -> Group:
    meta = obj.get("metadata") or {}
    where = f"{CONVENTION[api_version]} PodGroup {meta.get('namespace', '')}/{meta.get('name', '')}"
    spec = obj.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    if api_version == NATIVE:
        policy = spec.get("schedulingPolicy")
        policy = policy if isinstance(policy, dict) else {}
        gang = policy.get("gang")
        if not isinstance(gang, dict):
            if "basic" in policy:
                return Group(False, None, None, f"{where} (basic policy)")
            return Group(True, None, None, where, f"{where} has no schedulingPolicy.gang")
        size, field, ttl = (
            _int(gang.get("minCount")),
            "schedulingPolicy.gang.minCount",
            settings.native_timeout_seconds,
        )
    else:
        size, field, ttl = _int(spec.get("minMember")), "minMember", None
        if api_version == PLUGINS:
            timeout = _int(spec.get("scheduleTimeoutSeconds"))
            ttl = float(timeout) if timeout else settings.plugins_timeout_seconds
    if size is None or size < 1:
        return Group(
            True,
            None,
            ttl,
            where,
            f"{where} states {field} {spec.get('minMember', size)!r}, not a positive integer",
        )
    return Group(True, size, ttl, f"{where} ({field} {size})")


class PodGroupCache:
    """The PodGroup objects of every served API, by (apiVersion, namespace, name)."""

    def __init__(self, settings: GangSettings) -> None:
        self.settings = settings
        self.groups: dict[Ref, Group] = {}
        self.served: dict[str, bool | None] = dict.fromkeys(CONVENTION)  # None: not known yet
        self.why_unserved: dict[str, str] = {}

    def replace(self, api_version: str, items: list[dict[str, Any]]) -> set[Ref]:
        """A full list of one API; returns the refs that changed (added, updated or gone)."""
        self.served[api_version] = True
        old = {r: g for r, g in self.groups.items() if r[0] == api_version}
        new = {}
        for obj in items:
            ref = _ref(api_version, obj)
            if ref is not None:
                new[ref] = parse(api_version, obj, self.settings)
        for r in old:
            self.groups.pop(r, None)
        self.groups.update(new)
        return {r for r in old.keys() | new.keys() if old.get(r) != new.get(r)}

    def apply(self, api_version: str, etype: str, obj: dict[str, Any]) -> Ref | None:
        ref = _ref(api_version, obj)
        if ref is None:
            return None
        if etype == "DELETED":
            self.groups.pop(ref, None)
        else:
            self.groups[ref] = parse(api_version, obj, self.settings)
        return ref

    def unserved(self, api_version: str, why: str) -> set[Ref]:
        """The API is not served (any more): forget its objects; returns their refs."""
        self.served[api_version] = False
        self.why_unserved[api_version] = why
        gone = {r for r in self.groups if r[0] == api_version}
        for r in gone:
            del self.groups[r]
        return gone

    def get(self, ref: Ref) -> Group | None:
        return self.groups.get(ref)

    def why_missing(self, ref: Ref) -> str:
        api, ns, name = ref
        served, what = self.served.get(api), f"its size is in {CONVENTION[api]} PodGroup {ns}/{name}"
        if served is False:
            return (
                f"{what}, but the API server does not serve {api} ({self.why_unserved.get(api, 'not found')})"
            )
        if served is None:
            return f"{what}; {api} PodGroups are not listed yet"
        return f"{what}, which does not exist"


def _ref(api_version: str, obj: dict[str, Any]) -> Ref | None:
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str) or not name:
        return None
    return api_version, ns, name
