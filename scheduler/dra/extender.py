"""The verbs for pods whose GPUs come from ResourceClaims: filter and score rows, confirm at bind.

What kube-scheduler does around the extender (pkg/scheduler/framework/plugins/dynamicresources,
`Filter`, `Reserve`, `PreBind`): its DynamicResources plugin runs the structured allocator for each
node in its own Filter (before the extender's filter), keeps the chosen allocation in memory at
Reserve, and in PreBind writes each claim's `status.allocation` and adds the pod to `reservedFor` —
before the extender's bind. So gpuplace chooses the node, never the device:
- filter: passes the nodes where the pod's demand fits what is free (scheduler.dra.fit's rules, for
  all offered nodes at once: scheduler.dra.rows) and says why
  not for the others; for demand it cannot read completely it passes every offered node (the in-tree
  filter already judged them);
- prioritize: the configured policy's score for the equivalent whole-GPU or MIG request
  (placement_core: fragmentation-aware, NVLink islands from the topology annotation where present),
  times the PCIe-root fit for PCIe-constrained requests — nodes where the allocator's result will be
  good: a tight free PCIe root for a 2-GPU `matchAttribute` claim, and the policy's packing elsewhere;
- bind: reads the pod's claims fresh from the API server and refuses unless each GPU claim is
  allocated on the node being bound and reserved for this pod; then counts the devices actually
  allocated (the ledger) and writes them in the placement record.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from placement_core import GpuRequest, NvlinkNeed, Placement
from scheduler.binder import ApiError
from scheduler.context import ExtenderContext
from scheduler.dra.demand import DraDemand, pod_demand
from scheduler.dra.objects import Claim
from scheduler.dra.rows import DraFit, fit_rows
from scheduler.dra.state import claim_names
from scheduler.wire import Pod


def demand_of(ctx: ExtenderContext, pod: Pod) -> DraDemand | None:
    """The pod's DRA GPU demand from the cache's claims; None: not a DRA GPU pod (or DRA mode off)."""
    dra = ctx.cache.dra
    if dra is None or not (pod.spec.resource_claims or pod.status.extended_resource_claim_status):
        return None
    claims, missing = dra.claims_of(pod)
    s = ctx.settings.dra
    return pod_demand(claims, missing, dict(s.device_classes), frozenset(s.drivers))


def fits(ctx: ExtenderContext, demand: DraDemand, names: list[str]) -> DraFit:
    """`fit` for every offered node (scheduler.dra.rows), memoised for prioritize after filter: valid
    while neither the DRA state nor the ClusterState moved (their versions are in the key)."""
    dra = ctx.cache.dra
    assert dra is not None
    key = ("dra-fit", demand, dra.version, ctx.cache.state.version, tuple(names))
    return ctx.memo.get(key, lambda: fit_rows(dra, demand, names))


def filter_rows(
    ctx: ExtenderContext, demand: DraDemand, names: list[str]
) -> tuple[npt.NDArray[np.bool_], list[str], npt.NDArray[np.int64]]:
    """(fits per offered node, the distinct sentences why not, per node its sentence's index or −1)."""
    if demand.missing or not demand.understood:
        return np.ones(len(names), np.bool_), [], np.full(len(names), -1, np.int64)
    f = fits(ctx, demand, names)
    return f.ok, [f"gpuplace (DRA): {t}" for t in f.texts], f.which


def equivalent(req: GpuRequest, demand: DraDemand) -> GpuRequest | None:
    """The placement_core request whose score stands for `demand` (whole GPUs, or MIG of one profile)."""
    mig = demand.mig
    if mig is not None:
        return replace(req, count=mig[1], mig_profile=mig[0], milli=1000, nvlink=NvlinkNeed.NONE)
    n = demand.gpus
    if n <= 0:
        return None
    return replace(
        req, count=n, milli=1000, mig_profile=None, nvlink=NvlinkNeed.PREFERRED if n > 1 else NvlinkNeed.NONE
    )


def raw_scores(
    ctx: ExtenderContext, req: GpuRequest, demand: DraDemand, names: list[str], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Raw score per offered node in [0, 1], −inf where the demand does not fit: the policy's score of
    the equivalent request (0.5 where it has none) times the PCIe fit. `rows`: the ClusterState row
    of each name, −1 for a node it does not know."""
    eq = equivalent(req, demand)
    base = np.full(len(names), 0.5)
    if eq is not None:
        known = rows >= 0
        policy = ctx.scores(eq)[np.where(known, rows, 0)]
        use = known & np.isfinite(policy)
        base[use] = policy[use]
    f = fits(ctx, demand, names)
    return np.where(f.ok, np.maximum(0.0, base) * f.pcie_fit, -np.inf)


async def confirm(ctx: ExtenderContext, pod: Pod, node: str) -> tuple[Placement | None, str]:
    """Bind's check for a DRA pod: (the GPUs its claims hold on `node`, "") or (None, why not);
    (None, "") when the pod has no claims (its GPUs, if any, come from a device plugin).
    Reads the pod and its claims from the API server (PreBind wrote them just now; the watch
    may not have shown them yet) and applies what it read to the cache."""
    dra, binder = ctx.cache.dra, ctx.binder
    assert dra is not None
    get_claim = getattr(binder, "get_resource_claim", None)
    try:
        raw = await binder.get_pod(pod.metadata.namespace, pod.metadata.name)
    except ApiError as e:
        return None, f"cannot read the pod to find its ResourceClaims: {e}"
    if raw is None:
        return None, "pod not found"
    ctx.cache.apply_pod("MODIFIED", raw)  # known alive before its claims are: they hold for it
    fresh = Pod.model_validate(raw)
    if fresh.metadata.uid != pod.metadata.uid:
        return None, f"pod UID is {fresh.metadata.uid}, not {pod.metadata.uid} (re-created)"
    claims: list[Claim] = []
    for name in claim_names(fresh):
        if not name:
            return None, "a ResourceClaim from its template does not exist yet"
        if get_claim is not None:
            try:
                obj = await get_claim(pod.metadata.namespace, name)
            except ApiError as e:
                return None, f"cannot read ResourceClaim {pod.metadata.namespace}/{name}: {e}"
            if obj is None:
                return None, f"ResourceClaim {pod.metadata.namespace}/{name} does not exist"
            ctx.cache.apply_claim("MODIFIED", obj)
        c = dra.claim(pod.metadata.namespace, name)
        if c is None:
            return None, f"ResourceClaim {pod.metadata.namespace}/{name} is not known"
        claims.append(c)
    s = ctx.settings.dra
    gpu = [
        c
        for c in claims
        if any(a.device_class in s.device_classes for r in c.requests for a in r.alternatives)
    ]
    ext = fresh.status.extended_resource_claim_status
    if ext is not None:  # kube-scheduler names the device classes itself: its claim is GPU demand
        gpu += [c for c in claims if c.name == ext.resource_claim_name and c not in gpu]
    if not gpu:
        return None, ""  # no GPU claim: not ours to confirm
    for c in gpu:
        if not c.allocated:
            return (
                None,
                (
                    f"ResourceClaim {c.key} is not allocated (kube-scheduler's DynamicResources plugin writes "
                    "status.allocation in PreBind, before the extender's bind)"
                ),
            )
        on = dra.node_of(c)
        if on != node:
            return None, f"ResourceClaim {c.key} is allocated on node {on or '(none)'}, not {node}"
        if pod.metadata.uid not in c.reserved_for:
            return None, f"ResourceClaim {c.key} is not reserved for this pod (status.reservedFor)"
    nd = dra.devices(node)
    gpus: set[int] = set()
    mig: set[tuple[int, int]] = set()
    for c in gpu:
        for r in c.results:
            if r.admin or nd is None:
                continue
            m = nd.mig.get(r.key)
            if m is not None and m.slot >= 0:
                mig.add((m.gpu, m.slot))
            elif r.key in nd.index:
                gpus.add(nd.index[r.key])
    p = Placement(node=node, gpus=tuple(sorted(gpus)) if not mig else (), mig=tuple(sorted(mig)))
    return p, ""  # the record's UUIDs come from the node's DRA inventory (bind `_annotations`)
