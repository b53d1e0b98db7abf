"""Independent checks of DRA allocations as the API server holds them (used by `audit.AuditLoop`).

Read straight from ResourceClaims and ResourceSlices (resource.k8s.io/v1), not from gpuplace: every
allocated claim's results against the others and against the devices its pool publishes —
- a device in a result without `shareID` is in no other claim's results (exclusive), and results with
  a `shareID` share only a device that `allowMultipleAllocations`, within its capacity
  (`consumedCapacity` summed per device);
- `consumesCounters` of the allocated devices stay within their pool's `sharedCounters`;
- an allocated device exists in the newest generation of its pool;
- a pod in `reservedFor` that is bound is bound to the node the allocation pins;
- admin-access results are left out (they consume nothing).
The rules are upstream's (pkg/scheduler/framework/plugins/dynamicresources, `foreachAllocatedDevice`);
nothing here imports gpuplace's cache or scheduler code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from placement_core.quantity import QuantityError, parse_quantity


def _q(v: Any) -> Decimal:
    try:
        return parse_quantity(v if isinstance(v, int | float) else str(v))
    except QuantityError:
        return Decimal(0)


def _pinned(alloc: Mapping[str, Any]) -> str:
    for term in (alloc.get("nodeSelector") or {}).get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and len(f.get("values") or []) == 1:
                return str(f["values"][0])
    return ""


def dra_problems(claims: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]],
                 pods: Iterable[Mapping[str, Any]] = ()) -> list[str]:  # fmt: skip
    """Every violation in the allocated claims (see the module docstring); [] when consistent."""
    newest: dict[tuple[str, str], int] = {}
    slices = list(slices)
    for s in slices:
        spec = s.get("spec") or {}
        pool = (spec.get("driver", ""), (spec.get("pool") or {}).get("name", ""))
        newest[pool] = max(newest.get(pool, 0), int((spec.get("pool") or {}).get("generation") or 0))
    devices: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    counters: dict[tuple[str, str, str], dict[str, Decimal]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        drv, pool = spec.get("driver", ""), (spec.get("pool") or {}).get("name", "")
        if int((spec.get("pool") or {}).get("generation") or 0) != newest[(drv, pool)]:
            continue
        for d in spec.get("devices") or []:
            devices[(drv, pool, d.get("name", ""))] = d
        for cs in spec.get("sharedCounters") or []:
            counters[(drv, pool, cs.get("name", ""))] = {
                k: _q((v or {}).get("value", 0)) for k, v in (cs.get("counters") or {}).items()
            }
    node_of_pod = {(p.get("metadata") or {}).get("uid"): (p.get("spec") or {}).get("nodeName") for p in pods}
    problems: list[str] = []
    holders: dict[tuple[str, str, str], list[tuple[str, bool]]] = defaultdict(list)
    consumed: dict[tuple[str, str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    used: dict[tuple[str, str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for c in claims:
        meta, status = c.get("metadata") or {}, c.get("status") or {}
        alloc = status.get("allocation")
        if not alloc:
            continue
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        node = _pinned(alloc)
        for ref in status.get("reservedFor") or []:
            on = node_of_pod.get(ref.get("uid"))
            if node and on and on != node:
                problems.append(
                    f"claim {key}: allocated on {node}, its pod {ref.get('name')} is bound to {on}"
                )
        for r in (alloc.get("devices") or {}).get("results") or []:
            if r.get("adminAccess"):
                continue
            dk = (r.get("driver", ""), r.get("pool", ""), r.get("device", ""))
            name = "/".join(dk)
            dev = devices.get(dk)
            if dev is None:
                problems.append(
                    f"claim {key}: device {name} is not published in its pool's newest generation"
                )
            shared = bool(r.get("shareID"))
            for other, other_shared in holders[dk]:
                if not (shared and other_shared):
                    problems.append(f"device {name} allocated to {other} and {key}")
                    break
            if shared and dev is not None and not dev.get("allowMultipleAllocations"):
                problems.append(f"device {name} shared by {key} but does not allow multiple allocations")
            holders[dk].append((key, shared))
            for cap, v in (r.get("consumedCapacity") or {}).items():
                consumed[dk][cap] += _q(v)
            for cc in (dev or {}).get("consumesCounters") or []:
                ck = (dk[0], dk[1], cc.get("counterSet", ""))
                for cname, v in (cc.get("counters") or {}).items():
                    used[ck][cname] += _q((v or {}).get("value", 0))
    for dk, caps in consumed.items():
        dev = devices.get(dk) or {}
        for cap, total in caps.items():
            limit = _q(((dev.get("capacity") or {}).get(cap) or {}).get("value", 0))
            if total > limit:
                problems.append(f"device {'/'.join(dk)}: {cap} consumed {total} > capacity {limit}")
    for ck, amounts in used.items():
        for cname, total in amounts.items():
            limit = counters.get(ck, {}).get(cname, Decimal(0))
            if total > limit:
                problems.append(f"counter set {'/'.join(ck)}: {cname} used {total} > {limit}")
    return problems
