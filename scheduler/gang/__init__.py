"""Gang scheduling: all-or-nothing, topology-aware placement of multi-pod jobs. Reading order:

- `identity`: which gang a pod belongs to, its minimum size and topology (gpuplace's keys, which the
  webhook writes for every convention; Kueue's pod-stated total as a fallback);
- `members`: the gangs and their members, fed by the pod watch;
- `store`: a plan (the commit point) and where it is kept: a ConfigMap per gang;
- `manager`: planning (placement_core.gangplan), the holds others see as used, the bind barrier,
  expiry, nudges, reload after a restart;
- `ledger`: the invariant audit of plans and holds.

Design and limits: scheduler/gang/README.md.
"""

from scheduler.gang.identity import GangId, GangIdentityError, gang_of
from scheduler.gang.ledger import audit
from scheduler.gang.manager import HOLD, GangManager, Verdict
from scheduler.gang.store import KubePlanStore, MemoryPlanStore, Plan, PlanStore

__all__ = [
    "HOLD",
    "GangId",
    "GangIdentityError",
    "GangManager",
    "KubePlanStore",
    "MemoryPlanStore",
    "Plan",
    "PlanStore",
    "Verdict",
    "audit",
    "gang_of",
]
