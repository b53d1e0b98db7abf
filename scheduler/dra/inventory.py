"""ResourceSlices → which GPUs a node has, as DRA describes them (`NodeDevices`), and its `NodeSpec`.

Which slices count (the rules kube-scheduler's allocator applies, k8s.io/dynamic-resource-allocation
`structured/pools.go`, `GatherPools` / `addSlice`): only slices of the configured drivers
(`dra.drivers`, default `gpu.nvidia.com`) local to one node (`spec.nodeName`, or per-device `nodeName`);
per (driver, pool) only the newest `pool.generation`; and a pool only when all of its
`pool.resourceSliceCount` slices of that generation are present — an incomplete pool is being
rewritten by its driver and describes nothing yet (the allocator skips it too, `IsIncomplete`).

What a device is, as NVIDIA's driver (sigs.k8s.io/dra-driver-nvidia-gpu, cmd/gpu-kubelet-plugin
`deviceinfo.go` GetDevice / CommonAttributesMig) publishes it: `gpu-<minor>` with `type: gpu`,
`uuid`, `productName`, `architecture`, `cudaComputeCapability`, `driverVersion`, capacity `memory`
(bytes), `resource.kubernetes.io/pcieRoot`; MIG devices `type: mig` with `parentUUID`, `profile` and
capacity `memorySlice<i>` for the memory slices they occupy (their placement start). With
DRAPartitionableDevices the MIG devices are every *possible* partition, each `consumesCounters` of its
parent's counter set; a device whose counters are all taken cannot be allocated.

GPU indices: the node's whole GPUs sorted by minor (the `gpu-<minor>` number), 0..n-1 — the index the
placement record and placement_core use.

Precedence when several sources describe one node (scheduler.nodeinv for the others):
1. ResourceSlices, when the node has a complete pool of a configured driver: they ARE its GPU
   inventory (which GPUs exist, model, memory, UUIDs, MIG devices, PCIe roots). Allocatable
   `nvidia.com/gpu` and the GFD count on such a node are the same physical GPUs seen through the device
   plugin, never added to them: no GPU is counted twice.
2. The `gpuplace.io/gpu-topology` annotation adds what slices do not publish: the NVLink matrix (NVIDIA
   publishes no NVLink attribute) and health, matched to the slices' GPUs by UUID. An annotation whose
   UUIDs do not match the slices is ignored with a warning.
3. GFD labels give the model only when a device has no `productName`; zone, rack and clique always.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from placement_core import GpuSpec, MigInstance, NodeSpec, resolve_product
from scheduler.dra.objects import PCIE_ROOT, Device, Slice

_MINOR = re.compile(r"^gpu-(\d+)$")
_MIG_MINOR = re.compile(r"^gpu-(\d+)-mig-")
_SLICE = re.compile(r"^memorySlice(\d+)$")
_MIB = Decimal(1 << 20)
DeviceKey = tuple[str, str, str]  # (driver, pool, device) as allocation results name it


@dataclass(frozen=True, slots=True)
class MigDevice:
    key: DeviceKey
    gpu: int  # index of the parent GPU
    profile: str
    start: int
    slot: int  # position in the parent's static MIG layout; -1 for a partitionable (possible) device
    device: Device


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU: its own `gpu` device, or (static MIG mode, where the driver publishes only the
    MIG devices of a MIG-enabled GPU) the parent its MIG devices name by `parentUUID`."""

    minor: int
    uuid: str
    key: DeviceKey | None  # the whole-GPU device, if published
    attrs: dict[str, str | int | bool]
    memory_mib: int

    def attr(self, name: str) -> str | int | bool | None:
        return self.attrs.get(name)


@dataclass(slots=True)
class NodeDevices:
    """One node's DRA GPUs. `gpus[i]` is GPU index i; every device of a counted pool is in `devices`."""

    node: str
    gpus: list[Gpu] = field(default_factory=list)
    mig: dict[DeviceKey, MigDevice] = field(default_factory=dict)
    devices: dict[DeviceKey, Device] = field(default_factory=dict)
    index: dict[DeviceKey, int] = field(default_factory=dict)  # whole-GPU device → GPU index
    counters: dict[tuple[str, str, str], dict[str, Decimal]] = field(default_factory=dict)  # (drv, pool, set)
    pools: tuple[tuple[str, str, int], ...] = ()  # (driver, pool, generation) counted
    _ordered: list[tuple[DeviceKey, Device]] | None = None

    def gpu_of(self, key: DeviceKey) -> int | None:
        """The GPU index a device lives on: the GPU itself, or a MIG device's parent."""
        if key in self.index:
            return self.index[key]
        m = self.mig.get(key)
        return m.gpu if m is not None else None

    def pcie_root(self, gpu: int) -> str:
        return str(self.gpus[gpu].attr(PCIE_ROOT) or "")

    def uuids(self) -> tuple[str, ...]:
        return tuple(g.uuid for g in self.gpus)

    def ordered(self) -> list[tuple[DeviceKey, Device]]:
        """The devices sorted by key (the order fit takes them in), computed once."""
        if self._ordered is None:
            self._ordered = sorted(self.devices.items())
        return self._ordered


def _is_gpu(d: Device) -> bool:
    return d.kind == "gpu" or (not d.kind and _MINOR.match(d.name) is not None)


def _minor(d: Device) -> tuple[int, str]:
    m = _MINOR.match(d.name)
    return (int(m.group(1)) if m else 1 << 30, d.name)


def _start(d: Device) -> int:
    """A MIG device's placement start: its lowest `memorySlice<i>` capacity, else the name's last
    number (`gpu-<minor>-mig-<profile>-<profileID>-<start>`), else 0."""
    starts = [int(m.group(1)) for k in d.capacity if (m := _SLICE.match(k))]
    if starts:
        return min(starts)
    tail = d.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def counted_pools(slices: Iterable[Slice], drivers: frozenset[str]) -> dict[str, list[Slice]]:
    """node → the slices of its complete, newest-generation pools of `drivers`."""
    pools: dict[tuple[str, str], list[Slice]] = defaultdict(list)
    for s in slices:
        if s.driver in drivers:
            pools[(s.driver, s.pool)].append(s)
    by_node: dict[str, list[Slice]] = defaultdict(list)
    for group in pools.values():
        newest = max(s.generation for s in group)
        current = [s for s in group if s.generation == newest]
        if len(current) != current[0].slice_count:
            continue  # incomplete: the driver is still writing this generation
        nodes = {s.node for s in current if s.node} | {
            d.node for s in current if s.per_device_nodes for d in s.devices if d.node
        }
        if len(nodes) != 1:
            continue  # not node-local (network-attached devices): not GPUs of one node
        by_node[nodes.pop()].extend(current)
    return by_node


def node_devices(node: str, slices: list[Slice]) -> NodeDevices:
    """The devices of one node's counted slices (see `counted_pools`)."""
    nd = NodeDevices(node, pools=tuple(sorted({(s.driver, s.pool, s.generation) for s in slices})))
    for s in slices:
        for name, counters in s.counters.items():
            nd.counters[(s.driver, s.pool, name)] = counters
        for d in s.devices:
            nd.devices[(s.driver, s.pool, d.name)] = d
    gpus: dict[str, Gpu] = {}
    for k, d in sorted(nd.devices.items(), key=lambda kd: _minor(kd[1])):
        if _is_gpu(d):
            uuid = str(d.attr("uuid") or k[2])
            gpus[uuid] = Gpu(_minor(d)[0], uuid, k, d.attributes, memory_mib(d))
    for d in nd.devices.values():
        parent = str(d.attr("parentUUID") or "")
        if d.kind == "mig" and parent and parent not in gpus:
            m = _MIG_MINOR.match(d.name)
            attrs = {
                a: v for a, v in d.attributes.items() if a not in ("uuid", "type", "profile", "parentUUID")
            }
            gpus[parent] = Gpu(int(m.group(1)) if m else 1 << 30, parent, None, attrs, 0)
    nd.gpus = sorted(gpus.values(), key=lambda g: (g.minor, g.uuid))
    nd.index = {g.key: i for i, g in enumerate(nd.gpus) if g.key is not None}
    by_uuid = {g.uuid: i for i, g in enumerate(nd.gpus)}
    slots: dict[int, int] = defaultdict(int)
    for k, d in sorted(nd.devices.items(), key=lambda kd: (_start(kd[1]), kd[0])):
        if d.kind != "mig":
            continue
        gpu = by_uuid.get(str(d.attr("parentUUID") or ""))
        if gpu is None:
            continue
        static = not d.consumes
        slot = slots[gpu] if static else -1
        if static:
            slots[gpu] += 1
        nd.mig[k] = MigDevice(k, gpu, str(d.attr("profile") or ""), _start(d), slot, d)
    return nd


def memory_mib(d: Device) -> int:
    mem = d.capacity.get("memory")
    return int(mem / _MIB) if mem is not None else 0


def node_spec(
    nd: NodeDevices,
    base: NodeSpec,
    *,
    links: npt.NDArray[np.uint8] | None = None,
    healthy: list[bool] | None = None,
) -> NodeSpec:
    """`base` (the node's cpu/memory/zone/rack/clique from its Node object) with the GPUs of `nd`.
    Static MIG devices become the GPU's MIG layout (slot order = `MigDevice.slot`); a GPU with
    partitionable MIG devices stays a whole GPU here (its partitions are checked by counters in
    scheduler.dra.ledger / scheduler.dra.fit). Raises ValueError when the GPUs disagree on the model."""
    first = nd.gpus[0] if nd.gpus else None
    product = str(first.attr("productName") or "") if first is not None else ""
    model = None
    if first is not None:
        model = resolve_product(product.replace(" ", "-") or "unknown-gpu", first.memory_mib or None).model
    layouts: dict[int, list[MigInstance]] = defaultdict(list)
    for m in sorted(nd.mig.values(), key=lambda m: (m.gpu, m.slot)):
        if m.slot < 0 or model is None:
            continue
        p = model.mig_profile(m.profile)
        if p is None:
            raise ValueError(f"node {nd.node}: {model.name} has no MIG profile {m.profile!r} ({m.key[2]})")
        layouts[m.gpu].append(MigInstance(p, m.start))
    gpus = []
    for i, g in enumerate(nd.gpus):
        mig = tuple(layouts[i]) if i in layouts else None
        mem = g.memory_mib or (model.memory_mib if model else 0)
        gpus.append(GpuSpec(i, mem, healthy[i] if healthy else True, g.uuid, mig))
    spec = NodeSpec(
        base.name,
        model,
        gpus,
        links,
        cpu_milli=base.cpu_milli,
        memory_mib=base.memory_mib,
        zone=base.zone,
        rack=base.rack,
        clique=base.clique,
        schedulable=base.schedulable,
        time_sliced=False,  # a DRA GPU is handed out whole unless a claim consumes capacity of it
    )
    spec.validate()
    return spec


def from_annotation(
    nd: NodeDevices, annotated: NodeSpec | None, uuids: tuple[str, ...]
) -> tuple[npt.NDArray[np.uint8] | None, list[bool] | None, str]:
    """NVLink matrix and health for `nd`'s GPUs from the node's topology annotation (`annotated`, its
    GPUs' `uuids`), matched by UUID: (links, healthy, warning). (None, None, "") without an annotation;
    a warning when its UUIDs do not cover the slices' GPUs (then the model's preset is used)."""
    if annotated is None:
        return None, None, ""
    pos = {u: i for i, u in enumerate(uuids) if u}
    order = [pos.get(g.uuid) for g in nd.gpus]
    if not nd.gpus or any(i is None for i in order):
        missing = [g.uuid for g, i in zip(nd.gpus, order, strict=True) if i is None]
        return (
            None,
            None,
            f"node {nd.node}: topology annotation does not list the ResourceSlices' GPUs {missing}",
        )
    idx = np.asarray(order, np.intp)
    full = annotated.link_matrix()
    return (
        np.ascontiguousarray(full[np.ix_(idx, idx)], np.uint8),
        [annotated.gpus[int(i)].healthy for i in idx],
        "",
    )
