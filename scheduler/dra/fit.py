"""Can a node's free DRA devices serve a pod's demand, and how well (the PCIe-root fit)? The rules,
node by node: the verbs run them for all offered nodes at once through scheduler.dra.rows (a kernel
over packed arrays), held equal to `fit` by tests/scheduler/test_dra_packed.py.

A greedy pass over the requests in claim order, with the allocator's rules for what is free
(scheduler.dra.ledger): a device held by a claim without a share is taken; a shareable device
(`allowMultipleAllocations`) serves a capacity request while its capacity lasts; a device with
`consumesCounters` fits only while its pool's counter sets have room. kube-scheduler's structured
allocator searches with backtracking; this does not, so for claims of several differently
constrained requests it may say no where the allocator finds a way — which is why filter only uses
it for demand it reads completely (DraDemand.understood) and kube-scheduler's own DynamicResources
filter, which runs before the extender, stays the judge of feasibility.

The extender chooses the node, never the device: the allocator picks the devices on the chosen node
itself. So the score says how good a node is for what the allocator will do there: for a request that
needs one PCIe root (`matchAttribute: resource.kubernetes.io/pcieRoot`) the node whose smallest root
with room fits it most tightly keeps bigger free roots elsewhere intact (`pcie_fit` = needed / free in
that root, 1.0 = exact).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from scheduler.dra.demand import DraDemand, DraRequest
from scheduler.dra.inventory import DeviceKey, NodeDevices
from scheduler.dra.ledger import NodeUsage
from scheduler.dra.objects import PCIE_ROOT, Device


@dataclass(slots=True)
class Fit:
    ok: bool
    reason: str = ""
    pcie_fit: float = 1.0  # product over PCIe-constrained requests of needed / free in the chosen root
    chosen: list[DeviceKey] = field(default_factory=list)


@dataclass(slots=True)
class _Free:
    """What is still free on the node during one greedy pass (so requests of one pod do not overlap)."""

    nd: NodeDevices
    use: NodeUsage
    taken: set[DeviceKey] = field(default_factory=set)
    consumed: dict[DeviceKey, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    counters: dict[tuple[str, str, str], dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def _counter_room(self, key: DeviceKey, d: Device) -> bool:
        for cs, amounts in d.consumes:
            ck = (key[0], key[1], cs)
            limit = self.nd.counters.get(ck, {})
            for name, amount in amounts:
                used = self.use.counters.get(ck, {}).get(name, Decimal(0)) + self.counters[ck].get(
                    name, Decimal(0)
                )
                if used + amount > limit.get(name, Decimal(0)):
                    return False
        return True

    def usable(self, key: DeviceKey, d: Device, r: DraRequest) -> bool:
        if key in self.taken or not self._counter_room(key, d):
            return False
        if not self.use.taken(key):
            return not r.capacity or d.multiple
        if not d.multiple or key in self.use.exclusive or not r.capacity:
            return False
        for cap, amount in r.capacity:
            limit = d.capacity.get(cap)
            used = self.use.consumed.get(key, {}).get(cap, Decimal(0)) + self.consumed[key].get(
                cap, Decimal(0)
            )
            if limit is None or used + amount > limit:
                return False
        return True

    def take(self, key: DeviceKey, d: Device, r: DraRequest) -> None:
        if r.capacity and d.multiple:
            for cap, amount in r.capacity:
                self.consumed[key][cap] = self.consumed[key].get(cap, Decimal(0)) + amount
        else:
            self.taken.add(key)
        for cs, amounts in d.consumes:
            ck = (key[0], key[1], cs)
            for name, amount in amounts:
                self.counters[ck][name] = self.counters[ck].get(name, Decimal(0)) + amount


def _matches(nd: NodeDevices, key: DeviceKey, d: Device, r: DraRequest) -> bool:
    if r.kind == "gpu" and key not in nd.index:
        return False
    if r.kind == "mig" and key not in nd.mig:
        return False
    return all(str(d.attr(a) or "") == v for a, v in r.attrs)


def what(r: DraRequest) -> str:
    n = "all" if r.count == 0 else str(r.count)
    prof = dict(r.attrs).get("profile")
    thing = f"MIG {prof} device" if r.kind == "mig" and prof else ("MIG device" if r.kind == "mig" else "GPU")
    plural = "s" if r.count != 1 else ""
    root = " under one PCIe root" if r.same_pcie_root else ""
    return f"{n} free {thing}{plural}{root} (claim {r.claim}, request {r.name})"


def _serve(free: _Free, r: DraRequest) -> tuple[list[DeviceKey], float, str]:
    """Devices for one request alternative, the PCIe fit, or why not."""
    nd = free.nd
    cands = [(k, d) for k, d in nd.ordered() if _matches(nd, k, d, r)]
    ok = [(k, d) for k, d in cands if free.usable(k, d, r)]
    if r.count == 0:  # All: every matching device, all of them free
        if not cands or len(ok) != len(cands):
            return [], 0.0, f"needs {what(r)}; {len(ok)} of {len(cands)} matching devices are free here"
        return [k for k, _ in ok], 1.0, ""
    if not r.same_pcie_root:
        if len(ok) < r.count:
            return [], 0.0, f"needs {what(r)}; {len(ok)} free here"
        return [k for k, _ in ok[: r.count]], 1.0, ""
    roots: dict[str, list[DeviceKey]] = defaultdict(list)
    for k, d in ok:
        roots[str(d.attr(PCIE_ROOT) or "")].append(k)
    fitting = sorted((len(v), root) for root, v in roots.items() if root and len(v) >= r.count)
    if not fitting:
        spread = (
            ", ".join(f"{len(v)} on {root or '(no pcieRoot)'}" for root, v in sorted(roots.items())) or "none"
        )
        return [], 0.0, f"needs {what(r)}; free here: {spread}"
    size, root = fitting[0]
    return roots[root][: r.count], r.count / size, ""


def fit(nd: NodeDevices | None, use: NodeUsage, demand: DraDemand, node: str) -> Fit:
    """Whether `node` can serve `demand` now (greedy, see the module docstring)."""
    for claim, on in demand.allocated_on:
        if on and on != node:
            return Fit(False, f"claim {claim} is already allocated on node {on}")
    if not demand.requests:
        return Fit(True)
    if nd is None:
        return Fit(False, "node publishes no ResourceSlices of the DRA GPU driver")
    free = _Free(nd, use)
    out = Fit(True)
    for alts in demand.requests:
        why = ""
        for r in alts:  # firstAvailable: the first alternative that fits
            keys, pfit, why = _serve(free, r)
            if keys:
                for k in keys:
                    free.take(k, nd.devices[k], r)
                out.chosen.extend(keys)
                out.pcie_fit *= pfit
                why = ""
                break
        if why:
            return Fit(False, why)
    return out
