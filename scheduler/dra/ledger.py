"""Allocated ResourceClaims → what each node's devices hold, and the invariants of that ledger.

What holds, and why (the rules kube-scheduler counts by: pkg/scheduler/framework/plugins/dynamicresources
`allocateddevices.go`, `foreachAllocatedDevice`):
- a claim with `status.allocation` holds exactly the devices of `allocation.devices.results`, on the node
  its `allocation.nodeSelector` pins (else the node of a pod in `status.reservedFor`);
- released when the allocation is cleared or the claim is deleted — and, ahead of kube-controller-
  manager's resourceclaim controller (which clears `reservedFor` entries of pods that are gone and then
  deallocates), as soon as every pod in a non-empty `reservedFor` is known to be gone (deleted or
  finished): nothing can run on those devices any more;
- `adminAccess` results hold nothing (DRAAdminAccess: monitoring access beside the real user);
- a result with a `shareID` (DRAConsumableCapacity, on a device with `allowMultipleAllocations`) is a
  share: each holds its `consumedCapacity` of the device's capacity, and the sum must stay within it; a
  result without one holds the device alone (no other result, shared or not, may name it);
- a device with `consumesCounters` (DRAPartitionableDevices: MIG partitions, and the whole GPU that
  consumes all of its counter set) takes those amounts from the pool's `sharedCounters`, which must not
  be exceeded.
`NodeUsage.problems` lists every violation; `scheduler.cache` projects the usage into its ClusterState
(`placement`) so device-plugin pods on the same GPUs and the policies see it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from placement_core import Placement
from scheduler.dra.inventory import DeviceKey, NodeDevices
from scheduler.dra.objects import Claim

CounterKey = tuple[str, str, str]  # (driver, pool, counterSet)


@dataclass(slots=True)
class NodeUsage:
    node: str
    holders: dict[DeviceKey, list[str]] = field(default_factory=lambda: defaultdict(list))  # claim keys
    consumed: dict[DeviceKey, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    counters: dict[CounterKey, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    exclusive: set[DeviceKey] = field(default_factory=set)  # held by a result without shareID
    problems: list[str] = field(default_factory=list)

    def taken(self, key: DeviceKey) -> bool:
        return bool(self.holders.get(key))

    def placement(self, nd: NodeDevices | None) -> Placement:
        """The GPUs DRA holds here as one placement: a whole GPU for every GPU any held device lives on
        (itself, a share of it, a partition of it), static MIG slots as themselves."""
        gpus: set[int] = set()
        mig: set[tuple[int, int]] = set()
        if nd is not None:
            for key, who in self.holders.items():
                if not who:
                    continue
                m = nd.mig.get(key)
                if m is not None and m.slot >= 0:
                    mig.add((m.gpu, m.slot))
                    continue
                g = nd.gpu_of(key)
                if g is not None:
                    gpus.add(g)
            for ck, used in self.counters.items():  # a partition held on a GPU we cannot name: its parent
                if any(used.values()):
                    for key, d in nd.devices.items():
                        if key in nd.index and any((key[0], key[1], cs) == ck for cs, _ in d.consumes):
                            gpus.add(nd.index[key])
        return Placement(node=self.node, gpus=tuple(sorted(gpus)), mig=tuple(sorted(mig)))


def usage(node: str, nd: NodeDevices | None, claims: Iterable[Claim]) -> NodeUsage:
    """What `claims` (the holding claims on `node`) take of `nd`'s devices, with every violation."""
    u = NodeUsage(node)
    for c in sorted(claims, key=lambda c: c.key):
        for r in c.results:
            if r.admin:
                continue  # admin access consumes nothing
            key = r.key
            dev = nd.devices.get(key) if nd is not None else None
            if nd is not None and dev is None and key[0] in {k[0] for k in nd.devices}:
                u.problems.append(
                    f"{node}: claim {c.key} holds {'/'.join(key)}, which no counted slice publishes"
                )
            others = u.holders[key]
            if others and (not r.share or key in u.exclusive):
                u.problems.append(f"{node}: device {'/'.join(key)} allocated to {others[0]} and {c.key}")
            elif r.share and dev is not None and not dev.multiple:
                u.problems.append(
                    f"{node}: device {'/'.join(key)} shared by {c.key} but not allowMultipleAllocations"
                )
            if not r.share:
                u.exclusive.add(key)
            others.append(c.key)
            for cap, amount in r.consumed:
                total = u.consumed[key].get(cap, Decimal(0)) + amount
                u.consumed[key][cap] = total
                limit = dev.capacity.get(cap) if dev is not None else None
                if limit is not None and total > limit:
                    u.problems.append(
                        f"{node}: device {'/'.join(key)} capacity {cap} over-consumed ({total} > {limit})"
                    )
            if dev is None:
                continue
            for cs, amounts in dev.consumes:
                ck = (key[0], key[1], cs)
                for name, amount in amounts:
                    total = u.counters[ck].get(name, Decimal(0)) + amount
                    u.counters[ck][name] = total
                    limit = nd.counters.get(ck, {}).get(name) if nd is not None else None
                    if limit is None or total > limit:
                        u.problems.append(
                            f"{node}: counter {cs}/{name} of pool {key[1]} exceeded ({total} > {limit}) by {c.key}"
                        )
    return u
