"""How bench/cluster_replay.py runs one arm: a fresh local control plane, the events submitted on the
clock, the pods sampled every second; and the same slice through ``gpuplace simulate`` for comparison.

Every run is a fresh gpuplace.localcluster control plane (etcd, kube-apiserver, kube-controller-manager,
kwok nodes, kube-scheduler v1.36.3), with or without gpuplace as kube-scheduler's extender.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes_asyncio import client
from replay_trace import GPU, Event, Slice, node_manifests, physical_layout, pod_manifest
from rich.console import Console

from gpuplace.localcluster import ControlPlane
from gpuplace.localcluster.audit import list_raw
from gpuplace.localcluster.fake_nodes import create_nodes
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.lifecycle import wait_namespace_usable
from gpuplace.simulate.runner import Scenario, run_policy
from placement_core.policies import Policy

NAMESPACE = "replay"
MOST_ALLOCATED = {
    "profiles": [{
        "schedulerName": "default-scheduler",
        "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
            "type": "MostAllocated",
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}, {"name": GPU, "weight": 5}],
        }}}],
    }],
}  # fmt: skip


# A diagnostic: only the extender's scores rank nodes (kube-scheduler's in-tree score plugins, which
# spread by cpu/memory among nodes the extender scored alike, are off).
NO_IN_TREE_SCORES = {
    "profiles": [{"schedulerName": "default-scheduler", "plugins": {"score": {"disabled": [{"name": "*"}]}}}],
}


@dataclass(frozen=True)
class Arm:
    name: str
    description: str
    policy: str | None  # a gpuplace policy, or None: kube-scheduler alone
    scheduler: dict[str, Any] = field(
        default_factory=dict
    )  # KubeSchedulerConfiguration (merged for gpuplace)


@dataclass
class RunResult:
    name: str
    description: str
    times: list[float] = field(default_factory=list)
    alloc: list[float] = field(default_factory=list)  # % of GPU capacity held by bound pods (trace milli)
    alloc_whole: list[float] = field(default_factory=list)  # the part held by whole-GPU pods
    pending_end: int = 0
    pending_end_whole: int = 0
    mean_pending_s: float = 0.0
    mean_pending_whole_s: float = 0.0
    mean_alloc: float = 0.0
    mean_alloc_whole: float = 0.0
    end_alloc: float = 0.0
    whole_alloc_end: float = 0.0
    overbooked_nodes: int = 0  # nodes whose bound pods fit no physical GPU layout (replay_trace)
    end_alloc_physical: float = 0.0  # end_alloc less the shares no physical GPU layout can hold
    settle_s: float = 0.0  # after the last event (+10 s): until every pod was bound or found unschedulable


def _tried(pod: dict[str, Any]) -> bool:
    """Bound, or kube-scheduler has tried it and found no node (PodScheduled False, Unschedulable)."""
    if pod["spec"].get("nodeName"):
        return True
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)


async def _settle(api: client.ApiClient, deadline: float) -> float:
    """Wait until every pod is bound or was found unschedulable (the scheduling queue has caught up with
    the arrivals: the end figures measure placement, not throughput); at most until ``deadline``.
    Returns the seconds waited (``inf`` when the deadline passed first)."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    while loop.time() < deadline:
        if all(_tried(p) for p in await list_raw(api, "pods", namespace=NAMESPACE)):
            return loop.time() - begin
        await asyncio.sleep(1.0)
    return float("inf")


def _time_mean(t: np.ndarray, a: np.ndarray) -> float:
    return float(np.trapezoid(a, t) / (t[-1] - t[0])) if len(t) > 1 else 0.0


async def replay(cp: ControlPlane, sl: Slice, events: list[Event], result: RunResult, *, gpuplace: bool,
                 replicas: int, console: Console, settle: float = 60.0) -> None:  # fmt: skip
    capacity = int(sl.nodes.gpus.sum()) * 1000
    row = {name: i for _, _, i, name in events}
    milli = {
        name: int(sl.pods.gpu_count[i]) * min(int(sl.pods.gpu_milli[i]), 1000) for name, i in row.items()
    }
    whole = {name for name, i in row.items() if sl.kind(i) == "whole"}
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        body: Any = {"metadata": {"name": NAMESPACE}}
        await core.create_namespace(body)
        await wait_namespace_usable(api, NAMESPACE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        created: dict[str, float] = {}
        bound_at: dict[str, float] = {}
        deleted: dict[str, float] = {}  # a pod deleted before it was seen bound waited until then
        end = max(at for at, leaves, _, _ in events if not leaves) + 10.0

        async def sample() -> None:
            while True:
                pods = await list_raw(api, "pods", namespace=NAMESPACE)
                now = loop.time() - start
                held = held_whole = 0
                for p in pods:
                    name = p["metadata"]["name"]
                    if p["spec"].get("nodeName"):
                        held += milli[name]
                        held_whole += milli[name] if name in whole else 0
                        bound_at.setdefault(name, now)
                result.times.append(now)
                result.alloc.append(100 * held / capacity)
                result.alloc_whole.append(100 * held_whole / capacity)
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        try:
            for at, leaves, i, name in events:
                if at > end:
                    break
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                if not leaves:
                    pod: Any = pod_manifest(sl, i, gpuplace=gpuplace, replicas=replicas, name=name)
                    await core.create_namespaced_pod(NAMESPACE, pod)
                    created[name] = loop.time() - start
                else:
                    try:
                        await core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
                        deleted[name] = loop.time() - start
                    except client.ApiException as exc:
                        if exc.status != 404:
                            raise
            await asyncio.sleep(max(0.0, start + end - loop.time()))
            result.settle_s = await _settle(api, loop.time() + settle)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        pods = await list_raw(api, "pods", namespace=NAMESPACE)
    stop = loop.time() - start
    alive = {p["metadata"]["name"]: p for p in pods}
    pending = [n for n, p in alive.items() if not p["spec"].get("nodeName")]
    result.pending_end = len(pending)
    result.pending_end_whole = sum(n in whole for n in pending)
    waits = {n: min(bound_at.get(n, stop), deleted.get(n, stop)) - t for n, t in created.items()}
    result.mean_pending_s = float(np.mean(list(waits.values()))) if waits else 0.0
    whole_waits = [w for n, w in waits.items() if n in whole]
    result.mean_pending_whole_s = float(np.mean(whole_waits)) if whole_waits else 0.0
    t = np.array(result.times)
    result.mean_alloc = _time_mean(t, np.array(result.alloc))
    result.mean_alloc_whole = _time_mean(t, np.array(result.alloc_whole))
    result.end_alloc = result.alloc[-1] if result.alloc else 0.0
    held_whole = sum(milli[n] for n, p in alive.items() if n in whole and p["spec"].get("nodeName"))
    result.whole_alloc_end = 100 * held_whole / capacity
    gpus = {name.lower(): int(g) for name, g in zip(sl.nodes.names, sl.nodes.gpus, strict=True)}
    bound = [(p["spec"]["nodeName"], int(sl.pods.gpu_count[row[n]]), int(sl.pods.gpu_milli[row[n]]))
             for n, p in alive.items() if p["spec"].get("nodeName")]  # fmt: skip
    layout = physical_layout(gpus, bound)
    result.overbooked_nodes = len(layout.overbooked)
    result.end_alloc_physical = result.end_alloc - 100 * layout.unhonoured_milli / capacity
    console.print(
        f"  \\[{result.name}] mean alloc {result.mean_alloc:.1f} %, end {result.end_alloc:.1f} %, "
        f"{result.pending_end} pending at the end, {result.overbooked_nodes} nodes physically overbooked"
    )


def one_run(sl: Slice, events: list[Event], arm: Arm, *, replicas: int, console: Console) -> RunResult:
    result = RunResult(arm.name, arm.description)
    with ControlPlane() as cp:
        asyncio.run(_create_nodes(cp, node_manifests(sl, replicas=replicas)))
        if arm.policy:
            # The pods are written complete (requests = limits, the GPU toleration): no webhook needed.
            with GpuplaceServer(
                cp, settings={"scheduler": {"policy": arm.policy}}, register_webhook=False
            ) as gp:
                cp.start_scheduler(gp.scheduler_config(**arm.scheduler))
                asyncio.run(replay(cp, sl, events, result, gpuplace=True, replicas=replicas, console=console))
        else:
            cp.start_scheduler(arm.scheduler)
            asyncio.run(replay(cp, sl, events, result, gpuplace=False, replicas=replicas, console=console))
        if not result.end_alloc and sl.pods.gpu_count.any():
            tails = "\n".join(
                f"--- {name} ---\n{_tail(cp.log_file(name))}" for name in ("kube-scheduler", "gpuplace")
            )
            raise RuntimeError(f"run {arm.name} bound no GPU pod: not a result\n{tails}")
    return result


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


async def _create_nodes(cp: ControlPlane, manifests: list[dict[str, Any]]) -> None:
    async with cp.api_client() as api:
        await create_nodes(api, manifests)


@dataclass
class Simulated:
    alloc: float  # departures: mean over arrival/departure events (not over time); arrivals: at the end
    failed: int  # pods that found no node when they arrived (the simulator drops them; no retries)
    failed_whole: int


def simulated(
    sl: Slice, seed: int, *, departures: bool, arrival: float, policy: str = "gpuplace"
) -> Simulated:
    """``gpuplace simulate`` (``--departures`` or FGD's arrivals) on the same slice and seed, in-process."""
    scenario = Scenario(sl.nodes, sl.pods, arrival=arrival if not departures else 10.0, departures=departures)
    summary = run_policy(Policy.parse(policy), scenario, [seed])
    failed = {k: round(v) for k, v in summary.failed.items()}
    whole = sum(v for k, v in failed.items() if k not in ("share", "cpu"))
    alloc = summary.mean_alloc.mean if departures else summary.alloc[scenario.top].mean
    return Simulated(alloc, sum(failed.values()), whole)
