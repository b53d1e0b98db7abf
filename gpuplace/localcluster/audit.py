"""Independent checks of what ended up on the nodes: double booking, usage, partially used nodes.

The e2e tests, the demo and the benchmark judge gpuplace by what the API server holds, not by what
gpuplace believes: every bound pod's ``gpuplace.io/gpus`` record is read back and checked against
the others on its node and against the node's ``gpuplace.io/gpu-topology`` document, and no pending
pod may carry one (gpuplace writes the record with the Binding, so a pod has it exactly when it is
bound); a share (milli < 1000) is only valid on a node whose GPUs are time-sliced. Nothing here
imports gpuplace's cache or placement code; only the record's decoder (the documented format).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
import orjson
from kubernetes_asyncio import client

from gpuplace.localcluster.dra_audit import dra_problems
from scheduler.contract import Keys, Record, RecordError, decode_record

KEYS = Keys()
GPU_RESOURCE = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
TERMINAL = ("Succeeded", "Failed")


async def list_raw(api: client.ApiClient, kind: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Pods (all namespaces, or ``namespace=``), nodes, resourceclaims or resourceslices as raw JSON
    dicts (no model classes: fast)."""
    core = client.CoreV1Api(api)
    resp: Any
    if kind == "resourceclaims":
        resp = await client.ResourceV1Api(api).list_resource_claim_for_all_namespaces(_preload_content=False, **kwargs)
    elif kind == "resourceslices":
        resp = await client.ResourceV1Api(api).list_resource_slice(_preload_content=False, **kwargs)
    elif kind == "nodes":
        resp = await core.list_node(_preload_content=False, **kwargs)
    elif "namespace" in kwargs:
        resp = await core.list_namespaced_pod(kwargs.pop("namespace"), _preload_content=False, **kwargs)
    else:
        resp = await core.list_pod_for_all_namespaces(_preload_content=False, **kwargs)
    try:
        items: list[dict[str, Any]] = orjson.loads(await resp.read())["items"]
    finally:
        resp.release()
    return items


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _managed(container: Mapping[str, Any]) -> Counter[str]:
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    return Counter({name: _int(requests.get(name, limits.get(name, 0)))
                    for name in set(requests) | set(limits)
                    if name == GPU_RESOURCE or name.startswith(MIG_PREFIX)})  # fmt: skip


def gpu_demand(pod: Mapping[str, Any]) -> dict[str, int]:
    """Managed GPU resources (nvidia.com/gpu, nvidia.com/mig-*) the pod holds from a device plugin,
    counted as kube-scheduler counts them (component-helpers resource/helpers.go,
    `AggregateContainerRequests`): the containers plus the sidecars (init containers with restartPolicy
    Always), and at least, per resource, the peak of any other init container plus the sidecars started
    before it. Resources served by DRA (status.extendedResourceClaimStatus.requestMappings) are held by
    that claim, not by the device plugin: they are left out here and checked by `dra_audit`."""
    spec = pod.get("spec") or {}
    ext = ((pod.get("status") or {}).get("extendedResourceClaimStatus") or {}).get("requestMappings") or []
    by_dra = {str(m.get("resourceName")) for m in ext}
    total: Counter[str] = Counter()
    for c in spec.get("containers") or []:
        total.update(_managed(c))
    sidecars: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for c in spec.get("initContainers") or []:
        own = _managed(c)
        if c.get("restartPolicy") == "Always":
            total.update(own)
            sidecars.update(own)
            use = sidecars
        else:
            use = own + sidecars
        for name, n in use.items():
            peak[name] = max(peak[name], n)
    for name, n in peak.items():
        total[name] = max(total[name], n)
    return {name: n for name, n in total.items() if n and name not in by_dra}


def topology_of(node: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = ((node.get("metadata") or {}).get("annotations") or {}).get(KEYS.topology)
    if not raw:
        return None
    doc = orjson.loads(raw)
    return doc if isinstance(doc, dict) else None


def time_sliced(node: Mapping[str, Any] | None) -> bool:
    """GFD labels the node's GPUs as shared (a ``-SHARED`` product or a sharing strategy, with
    ``nvidia.com/gpu.replicas`` > 1). Elsewhere the device plugin hands every pod whole devices."""
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    shared = str(labels.get("nvidia.com/gpu.product", "")).endswith("-SHARED") or labels.get(
        "nvidia.com/gpu.sharing-strategy", "none") not in ("", "none")
    return shared and _int(labels.get("nvidia.com/gpu.replicas", 1)) > 1


def node_capacity(node: Mapping[str, Any]) -> int:
    """GPU devices the node offers: whole GPUs plus MIG devices (allocatable)."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return sum(_int(v) for k, v in alloc.items() if k == GPU_RESOURCE or k.startswith(MIG_PREFIX))


@dataclass
class PodOnNode:
    namespace: str
    name: str
    node: str
    demand: dict[str, int]
    record: Record | None
    record_error: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def devices(self) -> int:
        return sum(self.demand.values())


def bound_pods(pods: Iterable[Mapping[str, Any]]) -> list[PodOnNode]:
    """Bound, non-terminal pods with their GPU demand and decoded gpuplace record."""
    out = []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in TERMINAL:
            continue
        raw = (meta.get("annotations") or {}).get(KEYS.gpus)
        record, error = None, ""
        if raw:
            try:
                record = decode_record(raw)
            except RecordError as exc:
                error = str(exc)
        out.append(PodOnNode(meta.get("namespace", ""), meta.get("name", ""), node, gpu_demand(pod), record, error))
    return out


@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    gpu_pods: int = 0
    with_record: int = 0
    orphaned: int = 0  # GPU pods still bound to a deleted node

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]], *, require_records: bool = True
          ) -> Audit:
    """Check every bound GPU pod's record against its node and the other pods there, and that no
    unbound pod carries a record."""
    result = Audit()
    pods = list(pods)
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if (
            not spec.get("nodeName")
            and (pod.get("status") or {}).get("phase") not in TERMINAL
            and KEYS.gpus in (meta.get("annotations") or {})
        ):
            result.problems.append(f"{meta.get('namespace', '')}/{meta.get('name', '')}: {KEYS.gpus} record "
                                   "on an unbound pod")  # fmt: skip
    node_by_name = {str(n["metadata"]["name"]): n for n in nodes}
    by_node: dict[str, list[PodOnNode]] = defaultdict(list)
    for p in bound_pods(pods):
        if p.devices:
            by_node[p.node].append(p)
    for node_name, placed in sorted(by_node.items()):
        node = node_by_name.get(node_name)
        if node is None:  # the node was deleted; its pods wait for the pod garbage collector
            result.orphaned += len(placed)
            continue
        topo = topology_of(node) if node is not None else None
        _check_node(node_name, node, topo, placed, result, require_records)
    return result


def _check_node(name: str, node: Mapping[str, Any] | None, topo: dict[str, Any] | None,
                placed: list[PodOnNode], result: Audit, require_records: bool) -> None:
    problems = result.problems
    alloc = ((node or {}).get("status") or {}).get("allocatable") or {}
    totals: Counter[str] = Counter()
    for p in placed:
        totals.update(p.demand)
    for resource, used in totals.items():
        if used > _int(alloc.get(resource, 0)):
            problems.append(f"{name}: {used} {resource} bound, allocatable {alloc.get(resource, 0)}")
    gpus = {int(g["index"]): g for g in (topo or {}).get("gpus", [])}
    sliced = time_sliced(node)
    whole: dict[int, str] = {}
    shares: dict[int, list[tuple[str, int]]] = defaultdict(list)
    mig: dict[tuple[int, int], str] = {}
    for p in placed:
        result.gpu_pods += 1
        if p.record is None:
            if require_records:
                problems.append(f"{p.key} on {name}: no {KEYS.gpus} record ({p.record_error or 'missing'})")
            continue
        result.with_record += 1
        r = p.record
        if r.node != name:
            problems.append(f"{p.key}: record says node {r.node}, bound to {name}")
        mig_wanted = sum(v for k, v in p.demand.items() if k.startswith(MIG_PREFIX))
        if mig_wanted:
            if len(r.mig) != mig_wanted:
                problems.append(f"{p.key}: asks {mig_wanted} MIG devices, record has {len(r.mig)}")
            profile = next(k for k in p.demand if k.startswith(MIG_PREFIX))[len(MIG_PREFIX):]
            for g, slot in r.mig:
                if (g, slot) in mig:
                    problems.append(f"{name}: MIG device GPU {g} slot {slot} given to {mig[(g, slot)]} and {p.key}")
                mig[(g, slot)] = p.key
                layout = (gpus.get(g) or {}).get("mig") if gpus else None
                if gpus and (layout is None or slot >= len(layout)):
                    problems.append(f"{p.key}: GPU {g} of {name} has no MIG slot {slot}")
                elif layout is not None and layout[slot]["profile"].replace("+", ".") != profile:
                    problems.append(f"{p.key}: asks {profile}, got {layout[slot]['profile']} (GPU {g} slot {slot})")
            continue
        if r.milli >= 1000 and len(r.gpus) != p.demand.get(GPU_RESOURCE, 0):
            problems.append(f"{p.key}: asks {p.demand.get(GPU_RESOURCE, 0)} GPUs, record has {list(r.gpus)}")
        for g in r.gpus:
            if gpus and (g not in gpus or gpus[g].get("mig") is not None):
                problems.append(f"{p.key}: GPU {g} of {name} is not a whole GPU")
            if r.milli >= 1000:
                if g in whole or shares.get(g):
                    other = whole.get(g) or shares[g][0][0]
                    problems.append(f"{name}: GPU {g} given to {other} and {p.key}")
                whole[g] = p.key
            else:
                if not sliced:
                    problems.append(f"{p.key}: a {r.milli}m share of GPU {g} on {name}, whose GPUs are not "
                                    "time-sliced (the device plugin hands out whole GPUs there)")
                if g in whole:
                    problems.append(f"{name}: GPU {g} given to {whole[g]} and a share to {p.key}")
                shares[g].append((p.key, r.milli))
    for g, parts in shares.items():
        if sum(m for _, m in parts) > 1000:
            problems.append(f"{name}: GPU {g} shared beyond 1000m: {parts}")


def usage(pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """node → (GPU devices bound, GPU devices allocatable), for GPU nodes."""
    used: Counter[str] = Counter()
    for p in bound_pods(pods):
        used[p.node] += p.devices
    out = {}
    for n in nodes:
        name = str(n["metadata"]["name"])
        total = node_capacity(n)
        if total:
            out[name] = (used[name], total)
    return out


def partially_used(use: Mapping[str, tuple[int, int]]) -> list[str]:
    """Nodes with some but not all GPU devices taken (the fragmentation a packer avoids)."""
    return sorted(n for n, (u, t) in use.items() if 0 < u < t)


class AuditLoop:
    """:func:`audit` every ``every`` seconds DURING a scenario, over all pods and nodes (or ``namespaces``).

    ``dra=True`` adds the DRA checks (ResourceClaims against ResourceSlices, `dra_audit`).
    ``async with AuditLoop(api) as loop: ...`` then ``loop.problems`` (each prefixed with the round) and
    ``loop.rounds``. An audit that fails to list (the API server busy) is skipped, not counted. Problems
    are kept up to ``keep``; the loop never raises into the scenario.
    """

    def __init__(self, api: client.ApiClient, *, namespaces: Iterable[str] = (), every: float = 1.0,
                 require_records: bool = True, keep: int = 50, dra: bool = False) -> None:  # fmt: skip
        self.api = api
        self.dra = dra  # also audit ResourceClaims against ResourceSlices (dra_audit.dra_problems)
        self.namespaces = tuple(namespaces)
        self.every = every
        self.require_records = require_records
        self.keep = keep
        self.rounds = 0
        self.max_gpu_pods = 0
        self.problems: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def once(self) -> Audit:
        if self.namespaces:
            pods = [p for ns in self.namespaces for p in await list_raw(self.api, "pods", namespace=ns)]
        else:
            pods = await list_raw(self.api, "pods")
        result = audit(pods, await list_raw(self.api, "nodes"), require_records=self.require_records)
        if self.dra:
            claims = await list_raw(self.api, "resourceclaims")
            everyone = pods if not self.namespaces else await list_raw(self.api, "pods")
            result.problems += [f"DRA: {p}" for p in dra_problems(claims, await list_raw(self.api, "resourceslices"), everyone)]
        self.rounds += 1
        self.max_gpu_pods = max(self.max_gpu_pods, result.gpu_pods)
        for problem in result.problems[: max(0, self.keep - len(self.problems))]:
            self.problems.append(f"round {self.rounds}: {problem}")
        return result

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError, client.ApiException, aiohttp.ClientError, OSError):  # a skipped round
                await self.once()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.once()  # and a last look at the end state
