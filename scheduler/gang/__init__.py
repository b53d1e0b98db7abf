"""Gang scheduling: all-or-nothing, topology-aware placement of multi-pod jobs. Reading order:

- `identity`: which gang a pod belongs to, its minimum size and topology (gpuplace's keys, which the
  webhook writes for every convention; Kueue's pod-stated total as a fallback);
- `members`: the gangs and their members, fed by the pod watch;
- `podgroups`: the PodGroup objects (scheduler-plugins, Volcano, scheduling.k8s.io/v1alpha2) the
  scheduler watches for sizes and TTLs;
- `store`: a plan (the commit point) and where it is kept: a ConfigMap per gang, compare-and-set;
- `manager`: the gangs' state and the filter-time decisions: quorum, planning (placement_core.gangplan),
  order between gangs;
- `holds`: a plan's placements as allocations other pods see as used;
- `binding`: the bind barrier and the hand-over of a hold to the member's own bind;
- `upkeep`: persistence, expiry, nudges, leadership and reload;
- `ledger`: the invariant audit of plans and holds.

Design and limits: scheduler/gang/README.md.
"""

from scheduler.gang.holds import HOLD
from scheduler.gang.identity import GangId, GangIdentityError, gang_of
from scheduler.gang.ledger import audit
from scheduler.gang.manager import GangManager, Verdict
from scheduler.gang.store import KubePlanStore, MemoryPlanStore, Plan, PlanConflictError, PlanStore

__all__ = [
    "HOLD",
    "GangId",
    "GangIdentityError",
    "GangManager",
    "KubePlanStore",
    "MemoryPlanStore",
    "Plan",
    "PlanConflictError",
    "PlanStore",
    "Verdict",
    "audit",
    "gang_of",
]
