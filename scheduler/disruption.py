"""PodDisruptionBudgets and victim order, as kube-scheduler's default preemption reads them.

Why gpuplace keeps PDBs at all: its preempt verb may have to ADD victims to the ones kube-scheduler
chose (freeing GPUs by count does not free an NVLink island), and `NumPDBViolations` must then count the
added victims that violate a budget — the meta-victims form carries only UIDs. So gpuplace watches
PDBs (policy/v1) and the labels and start times of bound pods, and classifies victims exactly as
upstream does:

- importance (`MoreImportantPod`, pkg/scheduler/util/utils.go): higher priority first, then the earlier
  `status.startTime`; a pod without one counts as started now (`GetPodStartTime`), i.e. after every pod
  that has one. Ties among those are broken by UID here (upstream's order is then arbitrary);
- violation (`filterPodsWithPDBViolation`, pkg/scheduler/framework/plugins/defaultpreemption/
  default_preemption.go): walk the potential victims in importance order; every PDB of the pod's
  namespace whose selector matches the pod's labels, and that does not already list the pod in
  `status.disruptedPods`, loses one of its `status.disruptionsAllowed`; the pod violates when any
  matching budget goes below zero. A nil or empty selector matches nothing, as does an invalid one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gpuplace.scheduler.disruption")

Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


@dataclass(frozen=True, slots=True)
class Selector:
    """A metav1.LabelSelector that matches something: matchLabels folded into `In` requirements."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        for key, op, values in self.requirements:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


def parse_selector(raw: Any) -> Selector | None:
    """None when the selector matches nothing: nil, empty (upstream skips `selector.Empty()`), or
    invalid (`LabelSelectorAsSelector` fails: unknown operator, In/NotIn without values, Exists or
    DoesNotExist with values)."""
    if not isinstance(raw, dict):
        return None
    reqs: list[Requirement] = []
    for k, v in (raw.get("matchLabels") or {}).items():
        reqs.append((str(k), "In", frozenset([str(v)])))
    for e in raw.get("matchExpressions") or []:
        if not isinstance(e, dict):
            return None
        op, values = str(e.get("operator") or ""), frozenset(str(v) for v in e.get("values") or [])
        if op in ("In", "NotIn") and not values:
            return None
        if op in ("Exists", "DoesNotExist") and values:
            return None
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return None
        reqs.append((str(e.get("key") or ""), op, values))
    return Selector(tuple(reqs)) if reqs else None


@dataclass(frozen=True, slots=True)
class Budget:
    namespace: str
    name: str
    selector: Selector | None
    allowed: int
    disrupted: frozenset[str]  # pod names the eviction API already counted


def budget_of(obj: dict[str, Any]) -> Budget:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    try:
        allowed = int(status.get("disruptionsAllowed") or 0)
    except (TypeError, ValueError):
        allowed = 0
    return Budget(
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        parse_selector(spec.get("selector")),
        allowed,
        frozenset((status.get("disruptedPods") or {}).keys()),
    )


@dataclass(frozen=True, slots=True)
class Victim:
    """What ordering and PDB matching read of a potential victim."""

    uid: str
    namespace: str
    name: str
    priority: int
    labels: dict[str, str]
    start_time: str | None  # RFC 3339, as the API server writes it (UTC, 'Z'), so strings compare

    def importance(self) -> tuple[int, bool, str, str]:
        """Sort key, most important first (MoreImportantPod)."""
        return (-self.priority, self.start_time is None, self.start_time or "", self.uid)


class Disruption:
    """The PDBs (fed by their own list+watch) and the labels/start times of bound pods (fed by the pod
    watch through ClusterCache.apply_pod)."""

    def __init__(self) -> None:
        self.budgets: dict[tuple[str, str], Budget] = {}
        self.synced = False
        self._pods: dict[str, tuple[dict[str, str], str | None]] = {}

    # ---- feeds ---------------------------------------------------------------------------------
    def apply_budget(self, etype: str, obj: dict[str, Any]) -> None:
        b = budget_of(obj)
        if etype == "DELETED":
            self.budgets.pop((b.namespace, b.name), None)
        else:
            self.budgets[(b.namespace, b.name)] = b

    def replace_budgets(self, items: Iterable[dict[str, Any]]) -> None:
        self.budgets = {}
        for obj in items:
            self.apply_budget("ADDED", obj)
        self.synced = True

    def observe_pod(self, uid: str, pod: dict[str, Any]) -> None:
        """A bound, unfinished pod: remember its labels and start time."""
        labels = (pod.get("metadata") or {}).get("labels") or {}
        self._pods[uid] = (dict(labels), (pod.get("status") or {}).get("startTime"))

    def forget_pod(self, uid: str) -> None:
        self._pods.pop(uid, None)

    # ---- reads ---------------------------------------------------------------------------------
    def victim(self, uid: str, namespace: str, name: str, priority: int) -> Victim:
        labels, start = self._pods.get(uid, ({}, None))
        return Victim(uid, namespace, name, priority, labels, start)

    def violating(self, victims: Sequence[Victim]) -> list[bool]:
        """Per victim (given in importance order): does evicting it violate a PDB?
        (filterPodsWithPDBViolation; see the module docstring)."""
        budgets = list(self.budgets.values())
        left = [b.allowed for b in budgets]
        out = []
        for v in victims:
            bad = False
            if v.labels:
                for i, b in enumerate(budgets):
                    if b.namespace != v.namespace or b.selector is None or not b.selector.matches(v.labels):
                        continue
                    if v.name in b.disrupted:
                        continue
                    left[i] -= 1
                    if left[i] < 0:
                        bad = True
            out.append(bad)
        return out
