"""Replay a slice of the openb trace through the real control plane: kube-scheduler alone vs with gpuplace.

    .venv/bin/python bench/cluster_replay.py                  # 100 nodes; FGD's arrivals to 130 %
    .venv/bin/python bench/cluster_replay.py --policies most-allocated,fgd --departures --seconds 150

The slice: ``--nodes`` GPU nodes of openb_node_list_gpu_node.csv sampled per GPU model in proportion
(stratified), and the same fraction of openb_pod_list_default.csv's pods, sampled. Two workloads:
- default, FGD's method: the simulator's own arrival sequence for ``--seed`` (pods shuffled and resampled
  until the requested GPU reaches ``--arrival`` × capacity), submitted at ``--rate`` pods/s, nobody leaves;
- ``--departures``: pods arrive at their ``creation_time`` and are deleted at their ``deletion_time``, both
  compressed so that the last arrival is at ``--seconds``; pods still alive then stay. Over its 149 days
  the trace's pods live a median 9 minutes, so this keeps the cluster almost empty (allocation ≈ 1 %):
  it shows that the harness replays real churn, not placement quality.
Not yet adapted to gpuplace placing fractional shares only on time-sliced GPUs (scheduler.nodeinv.time_sliced,
newer than this bench): its gpuplace runs give the nodes whole GPUs, so there the share pods now stay
Pending; bench/results/cluster_replay.json was measured before that rule, when a share on such a node
held one whole device in kube-scheduler's count.
Every run is a fresh local control plane (gpuplace.localcluster: etcd, kube-apiserver,
kube-controller-manager, kwok nodes, kube-scheduler v1.36.3).

How the runs ask for GPUs:
- **gpuplace** (each ``--policies`` entry): nodes advertise their GPUs (``nvidia.com/gpu`` = GPU count);
  a pod asks ``nvidia.com/gpu: N``, and a fractional pod (gpu_milli < 1000) asks ``nvidia.com/gpu: 1``
  plus ``gpuplace.io/gpu-milli``.
- **kube-scheduler alone** cannot express a fraction. Its nodes advertise time-slicing replicas the way
  NVIDIA's device plugin does (``nvidia.com/gpu`` = GPU count × 10, label ``nvidia.com/gpu.replicas=10``,
  product suffixed ``-SHARED``); a pod asks ``ceil(gpu_milli / 100)`` replicas per GPU, so a whole GPU
  is 10 replicas. kube-scheduler only counts replicas: a "whole-GPU" pod may get slices of several GPUs
  (the device plugin's time-slicing gives no isolation either). Runs: its defaults
  (NodeResourcesFit LeastAllocated), and NodeResourcesFit MostAllocated weighted on ``nvidia.com/gpu``.
- GPU-model constraints (``gpu_spec``) become a required node affinity on ``nvidia.com/gpu.product``.
- The undisclosed G2 / G3 models are labelled as 8-GPU NVSwitch boards (A100-SXM4-80GB / H100-80GB),
  as the simulator treats them (gpuplace.simulate.gpuset).

Printed per run: GPU allocation (GPU-milli bound / capacity) time-averaged over the run and at its end,
the part of it held by whole-GPU pods, pods unschedulable at the end, mean pending time (creation → bound;
unbound pods count until the end); beside them ``gpuplace simulate`` (placement_core alone, no
Kubernetes, the gpuplace policy) on the same slice, seed and workload: how far the simulator is from the
real scheduler. Writes bench/results/cluster_replay.{json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kubernetes_asyncio import client  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from gpuplace.localcluster import ControlPlane  # noqa: E402
from gpuplace.localcluster.audit import list_raw  # noqa: E402
from gpuplace.localcluster.fake_nodes import NodePreset, create_nodes, node_manifest  # noqa: E402
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer  # noqa: E402
from gpuplace.localcluster.lifecycle import wait_namespace_usable  # noqa: E402
from gpuplace.simulate.engine import arrivals  # noqa: E402
from gpuplace.simulate.runner import Scenario, run_policy  # noqa: E402
from gpuplace.simulate.traces import NodeTable, PodTable, read_nodes, read_pods  # noqa: E402
from placement_core.policies import Policy  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "openb"
RESULTS = ROOT / "bench" / "results"
REPLICAS = 10  # time-slicing replicas per GPU for kube-scheduler alone
GPU = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
# openb model → (GFD product label, memory MiB); G2/G3 undisclosed: 8-GPU NVSwitch boards.
PRODUCTS = {
    "G2": ("NVIDIA-A100-SXM4-80GB", 81920),
    "G3": ("NVIDIA-H100-80GB-HBM3", 81559),
    "V100M16": ("Tesla-V100-SXM2-16GB", 16384),
    "V100M32": ("Tesla-V100-SXM2-32GB", 32768),
    "T4": ("Tesla-T4", 15360),
    "P100": ("Tesla-P100-PCIE-16GB", 16384),
    "A10": ("NVIDIA-A10", 23028),
}
NAMESPACE = "replay"


@dataclass
class Slice:
    nodes: NodeTable
    pods: PodTable
    arrive: np.ndarray  # seconds into the run
    leave: np.ndarray  # seconds into the run, inf = stays


def stratified_slice(n_nodes: int, seconds: float, seed: int, data: Path = DATA) -> Slice:
    nodes, pods = read_nodes(data / "openb_node_list_gpu_node.csv"), read_pods(data / "openb_pod_list_default.csv")
    rng = np.random.default_rng(seed)
    models = np.array(nodes.models)
    chosen: list[int] = []
    for model in nodes.model_names():
        rows = np.nonzero(models == model)[0]
        k = max(1, round(n_nodes * len(rows) / len(nodes)))
        chosen.extend(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    chosen.sort()
    fraction = len(chosen) / len(nodes)
    picked = np.sort(rng.choice(len(pods), size=round(fraction * len(pods)), replace=False))
    assert pods.creation is not None and pods.deletion is not None
    creation, deletion = pods.creation[picked].astype(float), pods.deletion[picked].astype(float)
    t0, t1 = creation.min(), creation.max()
    scale = seconds / max(t1 - t0, 1.0)
    arrive = (creation - t0) * scale
    leave = np.where((deletion < 0) | (deletion > t1), np.inf, (deletion - t0) * scale)
    node_table = NodeTable(
        names=tuple(nodes.names[i] for i in chosen), cpu_milli=nodes.cpu_milli[chosen],
        memory_mib=nodes.memory_mib[chosen], gpus=nodes.gpus[chosen], models=tuple(nodes.models[i] for i in chosen),
    )  # fmt: skip
    # The simulator sees the same slice: pods alive at the last arrival never leave.
    deletion = np.where(np.isfinite(leave), pods.deletion[picked], -1)
    pod_table = PodTable(
        names=tuple(pods.names[i] for i in picked), cpu_milli=pods.cpu_milli[picked],
        memory_mib=pods.memory_mib[picked], gpu_count=pods.gpu_count[picked], gpu_milli=pods.gpu_milli[picked],
        models=tuple(pods.models[i] for i in picked), creation=pods.creation[picked], deletion=deletion,
    )  # fmt: skip
    return Slice(node_table, pod_table, arrive, leave)


def node_manifests(sl: Slice, *, replicas: int) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(sl.nodes.names):
        product, mib = PRODUCTS[sl.nodes.models[i]]
        count = int(sl.nodes.gpus[i])
        preset = NodePreset(key=f"openb-{sl.nodes.models[i]}", cpu=f"{int(sl.nodes.cpu_milli[i])}m",
                            memory=f"{int(sl.nodes.memory_mib[i])}Mi", gpu_product=product, gpu_memory_mib=mib,
                            gpu_count=count)  # fmt: skip
        m = node_manifest(name.lower(), preset, taint_gpu_nodes=False, topology=replicas == 1)
        if replicas > 1:
            labels = m["metadata"]["labels"]
            labels[PRODUCT] = f"{product}-SHARED"
            labels["nvidia.com/gpu.replicas"] = str(replicas)
            labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
            for key in ("capacity", "allocatable"):
                m["status"][key][GPU] = str(count * replicas)
        out.append(m)
    return out


Event = tuple[float, bool, int, str]  # (seconds into the run, is a deletion, pod row, pod name)


def departure_events(sl: Slice) -> list[Event]:
    """The trace's own times: arrive at creation_time, leave at deletion_time (compressed)."""
    out = [(float(sl.arrive[i]), False, i, sl.pods.names[i]) for i in range(len(sl.pods))]
    out += [(float(sl.leave[i]), True, i, sl.pods.names[i]) for i in range(len(sl.pods)) if math.isfinite(sl.leave[i])]
    return sorted(out)


def fgd_events(sl: Slice, seed: int, arrival: float, rate: float) -> list[Event]:
    """FGD's method: the simulator's arrival sequence for ``seed`` (shuffled, resampled until requested
    GPU reaches ``arrival`` × capacity), submitted at ``rate`` pods/s, nobody leaves."""
    events = arrivals(sl.pods, int(sl.nodes.gpus.sum()) * 1000, arrival, np.random.default_rng(seed))
    return [(k / rate, False, int(row), f"{sl.pods.names[row]}-{k}") for k, row in enumerate(events.pod)]


def pod_manifest(sl: Slice, i: int, *, replicas: int, name: str | None = None) -> dict[str, Any]:
    count, milli = int(sl.pods.gpu_count[i]), int(sl.pods.gpu_milli[i])
    requests = {"cpu": f"{int(sl.pods.cpu_milli[i])}m", "memory": f"{int(sl.pods.memory_mib[i])}Mi"}
    annotations: dict[str, str] = {}
    if count:
        if replicas > 1:
            amount = count * math.ceil(milli / (1000 / replicas))
        else:
            amount = count
            if milli < 1000:
                annotations["gpuplace.io/gpu-milli"] = str(milli)
        requests[GPU] = str(amount)
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": requests, "limits": {k: v for k, v in requests.items() if k == GPU}}}],
        "terminationGracePeriodSeconds": 0,
        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    }  # fmt: skip
    allowed = sl.pods.models[i]
    if count and allowed:
        values = sorted(PRODUCTS[m][0] + ("-SHARED" if replicas > 1 else "") for m in allowed if m in PRODUCTS)
        term = {"matchExpressions": [{"key": PRODUCT, "operator": "In", "values": values}]}
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or sl.pods.names[i], "annotations": annotations}, "spec": spec}  # fmt: skip


@dataclass
class RunResult:
    name: str
    description: str
    times: list[float] = field(default_factory=list)
    alloc: list[float] = field(default_factory=list)  # % of GPU capacity bound
    pending_end: int = 0
    pending_end_whole: int = 0
    mean_pending_s: float = 0.0
    mean_pending_whole_s: float = 0.0
    mean_alloc: float = 0.0
    end_alloc: float = 0.0
    whole_alloc_end: float = 0.0


def _milli(pod: dict[str, Any], replicas: int) -> int:
    """GPU-milli the pod holds (from its request; replicas converted back to milli)."""
    req = pod["spec"]["containers"][0]["resources"].get("requests", {})
    n = int(req.get(GPU, "0"))
    if replicas > 1:
        return n * 1000 // replicas
    share = (pod["metadata"].get("annotations") or {}).get("gpuplace.io/gpu-milli")
    return int(share) if share else n * 1000


async def replay(cp: ControlPlane, sl: Slice, events: list[Event], result: RunResult, *, replicas: int,
                 console: Console) -> None:  # fmt: skip
    capacity = int(sl.nodes.gpus.sum()) * 1000
    whole = {name for _, _, i, name in events if sl.pods.gpu_count[i] and sl.pods.gpu_milli[i] >= 1000}
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        body: Any = {"metadata": {"name": NAMESPACE}}
        await core.create_namespace(body)
        await wait_namespace_usable(api, NAMESPACE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        created: dict[str, float] = {}
        bound_at: dict[str, float] = {}
        end = max(at for at, leaves, _, _ in events if not leaves) + 10.0

        async def sample() -> None:
            while True:
                pods = await list_raw(api, "pods", namespace=NAMESPACE)
                now = loop.time() - start
                held = 0
                for p in pods:
                    if p["spec"].get("nodeName"):
                        held += _milli(p, replicas)
                        bound_at.setdefault(p["metadata"]["name"], now)
                result.times.append(now)
                result.alloc.append(100 * held / capacity)
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        try:
            for at, leaves, i, name in events:
                if at > end:
                    break
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                if not leaves:
                    pod: Any = pod_manifest(sl, i, replicas=replicas, name=name)
                    await core.create_namespaced_pod(NAMESPACE, pod)
                    created[name] = loop.time() - start
                else:
                    try:
                        await core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
                    except client.ApiException as exc:
                        if exc.status != 404:
                            raise
            await asyncio.sleep(max(0.0, start + end - loop.time()))
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
    waits = {n: bound_at.get(n, stop) - t for n, t in created.items()}
    result.mean_pending_s = float(np.mean(list(waits.values()))) if waits else 0.0
    whole_waits = [w for n, w in waits.items() if n in whole]
    result.mean_pending_whole_s = float(np.mean(whole_waits)) if whole_waits else 0.0
    t, a = np.array(result.times), np.array(result.alloc)
    result.mean_alloc = float(np.trapezoid(a, t) / (t[-1] - t[0])) if len(t) > 1 else 0.0
    result.end_alloc = float(a[-1]) if len(a) else 0.0
    held_whole = sum(_milli(p, replicas) for n, p in alive.items() if n in whole and p["spec"].get("nodeName"))
    result.whole_alloc_end = 100 * held_whole / capacity
    console.print(f"  \\[{result.name}] mean alloc {result.mean_alloc:.1f} %, end {result.end_alloc:.1f} %, "
                  f"{result.pending_end} pending at the end")


MOST_ALLOCATED = {
    "profiles": [{
        "schedulerName": "default-scheduler",
        "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
            "type": "MostAllocated",
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}, {"name": GPU, "weight": 5}],
        }}}],
    }],
}  # fmt: skip


def one_run(sl: Slice, events: list[Event], name: str, description: str, *, policy: str | None,
            scheduler: dict[str, Any], console: Console) -> RunResult:  # fmt: skip
    replicas = 1 if policy else REPLICAS
    result = RunResult(name, description)
    with ControlPlane() as cp:
        asyncio.run(_create_nodes(cp, node_manifests(sl, replicas=replicas)))
        if policy:
            with GpuplaceServer(cp, settings={"scheduler": {"policy": policy}}) as gp:
                cp.start_scheduler(gp.scheduler_config())
                asyncio.run(replay(cp, sl, events, result, replicas=replicas, console=console))
        else:
            cp.start_scheduler(scheduler)
            asyncio.run(replay(cp, sl, events, result, replicas=replicas, console=console))
    return result


async def _create_nodes(cp: ControlPlane, manifests: list[dict[str, Any]]) -> None:
    async with cp.api_client() as api:
        await create_nodes(api, manifests)


@dataclass
class Simulated:
    alloc: float  # departures: mean over arrival/departure events (not over time); arrivals: at the end
    failed: int  # pods that found no node when they arrived (the simulator drops them; no retries)
    failed_whole: int


def simulated(sl: Slice, seed: int, *, departures: bool, arrival: float) -> Simulated:
    """``gpuplace simulate`` (``--departures`` or FGD's arrivals) on the same slice and seed, in-process."""
    scenario = Scenario(sl.nodes, sl.pods, arrival=arrival if not departures else 10.0, departures=departures)
    summary = run_policy(Policy.GPUPLACE, scenario, [seed])
    failed = {k: round(v) for k, v in summary.failed.items()}
    whole = sum(v for k, v in failed.items() if k not in ("share", "cpu"))
    alloc = summary.mean_alloc.mean if departures else summary.alloc[scenario.top].mean
    return Simulated(alloc, sum(failed.values()), whole)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--policies", default="most-allocated", help="gpuplace policies, comma-separated")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--departures", action="store_true",
                    help="the trace's own creation/deletion times instead of FGD's arrival-only method")
    ap.add_argument("--arrival", type=float, default=1.3, help="FGD method: requested GPU / capacity at the end")
    ap.add_argument("--rate", type=float, default=8.0, help="FGD method: pods submitted per second")
    ap.add_argument("--data", type=Path, default=DATA, help="the openb folder (default ../shared/data/openb)")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 160))
    sl = stratified_slice(args.nodes, args.seconds, args.seed, args.data)
    sizes = Counter("cpu" if c == 0 else ("share" if m < 1000 else "whole") for c, m in zip(sl.pods.gpu_count, sl.pods.gpu_milli, strict=True))
    events = departure_events(sl) if args.departures else fgd_events(sl, args.seed, args.arrival, args.rate)
    console.print(f"slice: {len(sl.nodes)} nodes ({dict(Counter(sl.nodes.models))}), {int(sl.nodes.gpus.sum())} GPUs; "
                  f"{len(sl.pods)} pods ({dict(sizes)}); workload: {len(events)} events "
                  f"({'trace times' if args.departures else f'FGD arrivals to {args.arrival:.0%} of GPU capacity'})")
    runs: list[tuple[str, str, str | None, dict[str, Any]]] = []
    if not args.no_baselines:
        runs += [("alone", "kube-scheduler alone, defaults (time-slicing replicas)", None, {}),
                 ("alone-most", "kube-scheduler alone, NodeResourcesFit MostAllocated", None, MOST_ALLOCATED)]
    runs += [(f"gpuplace-{p}", f"kube-scheduler + gpuplace, policy {p}", p, {}) for p in args.policies.split(",") if p]
    results = []
    for name, desc, policy, sched in runs:
        console.print(f"run {name}: {desc}")
        t = time.monotonic()
        results.append(one_run(sl, events, name, desc, policy=policy, scheduler=sched, console=console))
        console.print(f"  {time.monotonic() - t:.0f}s")
    table = Table(title=f"openb default slice on the real control plane ({len(sl.nodes)} nodes, {len(sl.pods)} pods, "
                        f"{args.seconds:.0f} s)")  # fmt: skip
    for col in ("run", "GPU alloc % (time mean)", "GPU alloc % (end)", "whole-GPU pods alloc % (end)",
                "pending at end (whole-GPU)", "mean pending s (whole-GPU)"):
        table.add_column(col)
    for r in results:
        table.add_row(r.description, f"{r.mean_alloc:.1f}", f"{r.end_alloc:.1f}", f"{r.whole_alloc_end:.1f}",
                      f"{r.pending_end} ({r.pending_end_whole})", f"{r.mean_pending_s:.1f} ({r.mean_pending_whole_s:.1f})")
    sim = simulated(sl, args.seed, departures=args.departures, arrival=args.arrival)
    if args.departures:
        table.add_row("gpuplace simulate --departures (placement_core alone; mean over events; failures dropped)",
                      f"{sim.alloc:.1f}", "", "", f"{sim.failed} failed ({sim.failed_whole})", "")
    else:
        table.add_row("gpuplace simulate, same arrivals (placement_core alone; failures dropped)",
                      "", f"{sim.alloc:.1f}", "", f"{sim.failed} failed ({sim.failed_whole})", "")
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"args": vars(args), "stamp": dt.datetime.now(dt.UTC).isoformat(), "runs": [r.__dict__ for r in results],
           "simulate": sim.__dict__}  # fmt: skip
    (RESULTS / "cluster_replay.json").write_text(json.dumps(out, indent=1, default=str))
    _plot(results, RESULTS / "cluster_replay.png")
    console.print(f"wrote {RESULTS / 'cluster_replay.json'} and .png")
    return 0


def _plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in results:
        ax.plot(r.times, r.alloc, label=r.description)
    ax.set_xlabel("seconds into the replay")
    ax.set_ylabel("GPU capacity bound, %")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
