"""A Kubernetes Node (raw JSON) → placement_core `NodeSpec`, plus the GPU UUIDs it published.

Sources, most specific first:
1. the `gpuplace.io/gpu-topology` annotation (scheduler.topology_doc) — exact GPUs, health, MIG layout,
   NVLink matrix;
2. NVIDIA GPU Feature Discovery labels and the node's allocatable resources (CONTEXT.md lists them):
   model from `nvidia.com/gpu.product`, memory from `nvidia.com/gpu.memory`, topology from the product's
   preset. Without the annotation some facts are inferred, and the inference is stated here:
   - GPUs = `nvidia.com/gpu.count`, or allocatable `nvidia.com/gpu` (÷ replicas when time-sliced);
   - time-sliced (`time_sliced`): fractional shares are placed only there;
     allocatable below that count means the device plugin withdrew unhealthy GPUs — the highest
     indices are marked unhealthy (which ones is unknown without the annotation);
   - MIG `mixed`: allocatable `nvidia.com/mig-<profile>` instances are packed first-fit, largest
     first, onto MIG-enabled GPUs placed before the whole GPUs;
   - MIG `single` (`…-MIG-1g.10gb` products): every MIG device is modelled as a small plain GPU
     without NVLink — that is how pods see it (they request `nvidia.com/gpu`).
Why `spec.unschedulable` (cordon) is not read: kube-scheduler's NodeUnschedulable plugin runs before the
extender and already rejects a cordoned node unless the pod tolerates `node.kubernetes.io/unschedulable`
(DaemonSet pods do; pkg/scheduler/framework/plugins/nodeunschedulable, `Filter`). A cordoned node that
reaches the extender is one kube-scheduler decided the pod may use; a second check here would only
reject it for a reason kube-scheduler already waived.
Why `node.kubernetes.io/not-ready` / `unreachable` taints are read (`condition_taints`) but never fail a
node in filter: the node-lifecycle controller puts them on a node whose Ready condition is False / Unknown
(pkg/controller/nodelifecycle, `doNoScheduleTaintingPass` with NoSchedule, and NoExecute for taint
eviction), and kube-scheduler's TaintToleration plugin (`Filter`: `FindMatchingUntoleratedTaint` over the
NoSchedule and NoExecute taints) runs before the extender, so such a node reaches filter only for a pod
that tolerates them — which may be placed there. The cache keeps such a node's GPUs and pods (they still
hold their GPUs until evicted), but its free GPUs are not free capacity: the metrics report them as
`unavailable`, and gang plans made for gangs other than the one asking (whose offered nodes
kube-scheduler did not filter) leave such nodes out (scheduler.cache, scheduler.metrics, scheduler.gang).
Why never raise: one odd node must not stop the cache. A bad annotation yields `warning` and the
label path; a node whose labels make no sense becomes a GPU-less node with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placement_core import MODELS, GpuModel, GpuSpec, MigInstance, MigProfile, NodeSpec, resolve_product
from placement_core.quantity import QuantityError, count, cpu_milli, memory_mib
from scheduler.contract import Keys
from scheduler.settings import SchedulerSettings
from scheduler.topology_doc import TopologyDoc, parse_topology

PRODUCT = "nvidia.com/gpu.product"
MEMORY = "nvidia.com/gpu.memory"
COUNT = "nvidia.com/gpu.count"
REPLICAS = "nvidia.com/gpu.replicas"
SHARING = "nvidia.com/gpu.sharing-strategy"
MIG_STRATEGY = "nvidia.com/mig.strategy"
CLIQUE = "nvidia.com/gpu.clique"
UNLIMITED = 1 << 40  # allocatable not reported: leave cpu/memory checks to kube-scheduler's own filters


@dataclass(frozen=True, slots=True)
class NodeRules:
    gpu_resource: str = "nvidia.com/gpu"
    mig_prefix: str = "nvidia.com/mig-"
    zone_label: str = "topology.kubernetes.io/zone"
    rack_label: str = "gpuplace.io/rack"
    max_gpus: int = 16
    keys: Keys = field(default_factory=Keys)

    @classmethod
    def from_settings(cls, s: SchedulerSettings) -> NodeRules:
        return cls(
            s.gpu_resource,
            s.mig_resource_prefix,
            s.zone_label,
            s.rack_label,
            s.max_gpus_per_node,
            Keys(s.annotation_prefix),
        )


@dataclass(slots=True)
class NodeInventory:
    spec: NodeSpec
    gpu_uuids: tuple[str, ...] = ()
    mig_uuids: dict[tuple[int, int], str] = field(default_factory=dict)
    source: str = "labels"  # "annotation" | "labels" | "none"
    warning: str | None = None

    def uuids_for(self, gpus: tuple[int, ...], mig: tuple[tuple[int, int], ...]) -> list[str]:
        """UUIDs of chosen GPUs / MIG instances, or [] unless every one is known."""
        if mig:
            out = [self.mig_uuids.get(gs, "") for gs in mig]
        else:
            out = [self.gpu_uuids[g] if g < len(self.gpu_uuids) else "" for g in gpus]
        return out if out and all(out) else []


def fingerprint(node: dict[str, Any], rules: NodeRules) -> tuple[Any, ...]:
    """Everything node_inventory reads; an update with an equal fingerprint changes nothing."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    rel = tuple(
        sorted(
            (k, v)
            for k, v in labels.items()
            if k.startswith("nvidia.com/") or k in (rules.zone_label, rules.rack_label)
        )
    )
    alloc = tuple(sorted(((node.get("status") or {}).get("allocatable") or {}).items()))
    topo = (meta.get("annotations") or {}).get(rules.keys.topology)
    return rel, alloc, topo


CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_FILTERED_EFFECTS = ("NoSchedule", "NoExecute")  # the effects TaintToleration's Filter checks


def condition_taints(node: dict[str, Any]) -> tuple[str, ...]:
    """The node-lifecycle controller's not-ready / unreachable taints on the node (NoSchedule or
    NoExecute: the effects kube-scheduler's TaintToleration filter checks), sorted, as `key:effect`."""
    taints = (node.get("spec") or {}).get("taints") or []
    found = {
        f"{t.get('key')}:{t.get('effect')}"
        for t in taints
        if isinstance(t, dict) and t.get("key") in CONDITION_TAINTS and t.get("effect") in _FILTERED_EFFECTS
    }
    return tuple(sorted(found))


def time_sliced(labels: dict[str, str]) -> bool:
    """GFD says the GPUs are shared: a `-SHARED` product or a sharing strategy other than none, with
    `nvidia.com/gpu.replicas` > 1. Only then does one `nvidia.com/gpu` unit stand for part of a GPU; on
    any other node the device plugin hands each unit out as a whole device (so shares are refused there
    and a share found there holds a whole GPU: placement_core.cluster)."""
    product = labels.get(PRODUCT, "")
    shared = product.endswith("-SHARED") or labels.get(SHARING, "none") not in ("", "none")
    return shared and (_int_label(labels, REPLICAS) or 1) > 1


def _int_label(labels: dict[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def _profile_memory_mib(p: MigProfile) -> int:
    gb = p.name.split(".")[1].removesuffix("+me").removesuffix("gb")
    return int(gb) * 1024 if gb.isdigit() else 0


def _pack_mig(model: GpuModel, counts: dict[str, int]) -> list[list[MigInstance]] | None:
    """First-fit, largest profile first, lowest valid start: a plausible layout for instance counts."""
    gpus: list[list[MigInstance]] = []
    occupied: list[int] = []
    wanted = []
    for name, n in counts.items():
        p = model.mig_profile(name)
        if p is None:
            return None
        wanted.extend([p] * n)
    for p in sorted(wanted, key=lambda p: (-p.size, p.name)):
        block = (1 << p.size) - 1
        placed = False
        for g, occ in enumerate(occupied):
            for s in p.starts:
                if s + p.size <= model.mig_memory_slices and not occ & (block << s):
                    occupied[g] |= block << s
                    gpus[g].append(MigInstance(p, s))
                    placed = True
                    break
            if placed:
                break
        if not placed:
            s = p.starts[0]
            gpus.append([MigInstance(p, s)])
            occupied.append(block << s)
    return gpus


def _from_annotation(
    name: str, doc: TopologyDoc, labels: dict[str, str], common: dict[str, Any], rules: NodeRules
) -> NodeInventory:
    gpus = doc.ordered()
    product = next((g.model for g in gpus if g.model), "") or labels.get(PRODUCT, "")
    if not product:
        raise ValueError("no GPU model: set gpus[].model or the nvidia.com/gpu.product label")
    model = (
        MODELS[product] if product in MODELS else resolve_product(product, _int_label(labels, MEMORY)).model
    )
    if len(gpus) > rules.max_gpus:
        raise ValueError(f"{len(gpus)} GPUs exceed max_gpus_per_node={rules.max_gpus}")
    specs, mig_uuids = [], {}
    for g in gpus:
        mig = None
        if g.mig is not None:
            insts = []
            for slot, m in enumerate(g.mig):
                p = model.mig_profile(m.profile)
                if p is None:
                    raise ValueError(f"GPU {g.index}: {model.name} has no MIG profile {m.profile!r}")
                insts.append(MigInstance(p, m.start))
                if m.uuid:
                    mig_uuids[(g.index, slot)] = m.uuid
            mig = tuple(insts)
        mem = g.memory_mib if g.memory_mib is not None else (_int_label(labels, MEMORY) or model.memory_mib)
        specs.append(GpuSpec(g.index, mem, g.healthy, g.uuid, mig))
    links = np.asarray(doc.links, dtype=np.uint8) if doc.links is not None else None
    spec = NodeSpec(name, model, specs, links, **common)
    spec.validate()
    return NodeInventory(spec, tuple(g.uuid for g in gpus), mig_uuids, "annotation")


def _from_labels(
    name: str, labels: dict[str, str], alloc: dict[str, Any], common: dict[str, Any], rules: NodeRules
) -> NodeInventory:
    whole_alloc = count(alloc.get(rules.gpu_resource, 0))
    mig_counts = {
        k[len(rules.mig_prefix) :]: count(v)
        for k, v in alloc.items()
        if rules.mig_prefix and k.startswith(rules.mig_prefix) and count(v) > 0
    }
    product = labels.get(PRODUCT, "")
    if not product and not whole_alloc and not mig_counts:
        return NodeInventory(NodeSpec(name, None, [], **common), source="none")
    resolved = resolve_product(product or "unknown-gpu", _int_label(labels, MEMORY))
    model = resolved.model
    label_mem = _int_label(labels, MEMORY)
    if resolved.mig_single_profile:
        p = model.mig_profile(resolved.mig_single_profile)
        mem = label_mem or (_profile_memory_mib(p) if p else 0)
        n = min(whole_alloc, rules.max_gpus)
        gpus = [GpuSpec(i, mem) for i in range(n)]
        return NodeInventory(NodeSpec(name, model, gpus, np.zeros((n, n), np.uint8), **common))
    shared = resolved.shared or labels.get(SHARING, "none") not in ("", "none")
    replicas = max(1, _int_label(labels, REPLICAS) or 1) if shared else 1
    label_count = _int_label(labels, COUNT)
    mig_gpus = _pack_mig(model, mig_counts) if mig_counts and model.mig_capable else []
    warning = None
    if mig_gpus is None:
        warning, mig_gpus = f"MIG resources {sorted(mig_counts)} do not match {model.name}", []
    healthy = math.ceil(whole_alloc / replicas)
    if mig_gpus:
        # mixed: allocatable nvidia.com/gpu counts exactly the whole (non-MIG) GPUs. GFD's gpu.count may
        # count all physical GPUs; any GPU beyond whole + packed MIG GPUs is of unknown state: unhealthy.
        physical = max(healthy, (label_count or 0) - len(mig_gpus))
    else:
        physical = label_count if label_count is not None and label_count >= healthy else healthy
    total = len(mig_gpus) + physical
    if total > rules.max_gpus:
        warning = f"{total} GPUs exceed max_gpus_per_node={rules.max_gpus}; keeping {rules.max_gpus}"
        total = rules.max_gpus
    mem = label_mem or model.memory_mib
    gpus = []
    for i in range(total):
        if i < len(mig_gpus):
            gpus.append(GpuSpec(i, mem, True, "", tuple(mig_gpus[i])))
        else:
            gpus.append(GpuSpec(i, mem, i - len(mig_gpus) < healthy))
    return NodeInventory(NodeSpec(name, model, gpus, None, **common), warning=warning)


def node_inventory(node: dict[str, Any], rules: NodeRules) -> NodeInventory:
    """Read one Node; never raises for odd content (see module docstring)."""
    meta = node.get("metadata") or {}
    name = str(meta.get("name") or "")
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    alloc = dict((node.get("status") or {}).get("allocatable") or {})
    try:
        cpu = cpu_milli(alloc["cpu"]) if "cpu" in alloc else UNLIMITED
        mem = memory_mib(alloc["memory"]) if "memory" in alloc else UNLIMITED
    except QuantityError:
        cpu = mem = UNLIMITED
    common: dict[str, Any] = {
        "cpu_milli": cpu,
        "memory_mib": mem,
        "zone": labels.get(rules.zone_label, ""),
        "rack": labels.get(rules.rack_label, ""),
        "clique": labels.get(CLIQUE, ""),
        "time_sliced": time_sliced(labels),
    }
    raw = (meta.get("annotations") or {}).get(rules.keys.topology)
    warning = None
    if raw is not None:
        try:
            return _from_annotation(name, parse_topology(str(raw)), labels, common, rules)
        except ValueError as e:
            warning = f"node {name}: ignoring {rules.keys.topology}: {e}"
    try:
        inv = _from_labels(name, labels, alloc, common, rules)
        inv.spec.validate()
    except (ValueError, QuantityError) as e:
        inv = NodeInventory(NodeSpec(name, None, [], **common), source="none")
        warning = f"node {name}: GPU labels/allocatable unreadable, treating as GPU-less: {e}"
    if warning or inv.warning:
        inv.warning = "; ".join(w for w in (warning, inv.warning) if w)
    return inv
