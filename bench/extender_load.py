"""Loopback HTTP load on the extender: filter+prioritize pairs as kube-scheduler sends them.

Cluster: 5,000 nodes × 8 GPUs (60% HGX H100, 25% A100-80GB, 15% L40S PCIe), 20,000 running pods
(70% 1-GPU, 20% 2-GPU, 8% 4-GPU, 2% 8-GPU; gpuplace records, placed by placer.choose), loaded through
the cache's own relist path (`replace_nodes` / `replace_pods`, no API server) — the build time is the
restart cost. The server (the real aiohttp app) runs in its own process; this process is the client.

A pair = POST filter, then POST prioritize with the NodeNames the filter returned (what
kube-scheduler does). Pods vary (1/2/4/8 GPUs, NVLink required/preferred, fractional shares, model
restrictions) with a fresh UID each. Modes:
- names-all: nodeCacheCapable, all 5,000 names every call (worst case: nothing filtered in-tree);
- names-intree: nodeCacheCapable, per pod shape the nodes with enough free GPUs by count — what
  kube-scheduler's NodeResourcesFit leaves before the extender's filter runs (the production steady state);
- names-new: nodeCacheCapable, a different list every call (the byte cache misses every time);
- full-nodes: nodeCacheCapable=false, 5,000 Node objects (~7 KB each, like real GFD nodes) per call.
Latency: sequential pairs (p50/p99 per pair, client-measured); throughput: `--concurrency` pairs in
flight. Before each filter the server marks its cluster changed (as a bind does between two pods in
real scheduling), so memos help only within one pod's filter → prioritize; `--no-churn` turns that off.
`--baseline CHECKOUT` serves the same cluster from another checkout too (the child process imports
gpuplace from there) and prints this/baseline ratios from the one run — the machine is shared and noisy,
so compare side by side, not across runs. Targets (issue 14): ≥ 1,000 pairs/s at 4 in flight, p99 ≤ 2 ms
per pair one at a time, server RSS ≤ 400 MB.

    .venv/bin/python bench/extender_load.py [--pairs 2000] [--full-nodes-pairs 5] [--concurrency 4]
        [--baseline /tmp/old] [--modes names-all,names-intree]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import socket
import statistics
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.table import Table

MODELS = [
    ("NVIDIA-H100-80GB-HBM3", 81559, 0.60),
    ("NVIDIA-A100-SXM4-80GB", 81920, 0.25),
    ("NVIDIA-L40S", 46068, 0.15),
]
SHAPES = [  # (gpus, annotations) of the pods being scheduled
    (1, {}),
    (1, {"gpuplace.io/gpu-milli": "500"}),
    (2, {}),
    (2, {"gpuplace.io/nvlink": "required"}),
    (4, {"gpuplace.io/nvlink": "required"}),
    (8, {"gpuplace.io/nvlink": "required"}),
    (1, {"gpuplace.io/gpu-models": "H100-80GB"}),
    (4, {"gpuplace.io/gpu-models": "A100-80GB,H100-80GB"}),
]


def node(name: str, product: str, mem: int, rng: random.Random) -> dict[str, Any]:
    """A Node as a GFD-labelled cluster serves it, padded with the usual status noise (~7 KB). L40S nodes
    are time-sliced (4 replicas), so the fractional-share pods have somewhere to go."""
    sliced = "L40S" in product
    alloc = {
        "cpu": "224",
        "memory": "2000Gi",
        "pods": "110",
        "nvidia.com/gpu": "32" if sliced else "8",
        "ephemeral-storage": "1Ti",
    }
    sharing = {"nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing"} if sliced else {}
    images = [
        {
            "names": [
                f"registry.example.com/team-{rng.randrange(99)}/image-{i}@sha256:{uuid.uuid4().hex}"
                f"{uuid.uuid4().hex}",
                f"registry.example.com/team/image-{i}:v{i}.{rng.randrange(99)}",
            ],
            "sizeBytes": rng.randrange(10**8, 10**10),
        }
        for i in range(24)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": f"{product}-SHARED" if sliced else product,
                **sharing,
                "nvidia.com/gpu.memory": str(mem),
                "nvidia.com/gpu.count": "8",
                "nvidia.com/mig.strategy": "none",
                "topology.kubernetes.io/zone": "z1",
                "gpuplace.io/rack": f"r{rng.randrange(100)}",
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "images": images,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                }
                for t, s in (
                    ("Ready", "True"),
                    ("MemoryPressure", "False"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "False"),
                )
            ],
            "nodeInfo": {"kubeletVersion": "v1.36.3", "osImage": "Ubuntu 24.04", "machineID": name},
        },
    }


def pod(name: str, gpus: int, annotations: dict[str, str], node_name: str = "") -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": str(uuid.uuid4()),
            "resourceVersion": "7",
            "annotations": annotations,
            "labels": {"app": "bench"},
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "cuda:12",
                    "resources": {"requests": {"cpu": "4", "memory": "16Gi", **limits}, "limits": limits},
                }
            ],
            "priority": 0,
            "schedulerName": "default-scheduler",
            **({"nodeName": node_name} if node_name else {}),
        },
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def build_nodes(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    products = [(p, m) for p, m, share in MODELS for _ in range(int(share * 100))]
    return [node(f"gpu-{i:05d}", *products[i % len(products)], rng) for i in range(n)]


def serve(
    port: int, n_nodes: int, n_pods: int, seed: int, conn: Connection, code: str | None, churn: bool
) -> None:
    if code:  # a baseline: this child imports gpuplace from another checkout (the parent never did)
        sys.path.insert(0, code)
    from aiohttp import web

    from placement_core import GpuRequest, placer
    from scheduler.binder import MemoryBinder
    from scheduler.context import ExtenderContext
    from scheduler.contract import encode_record
    from scheduler.http import make_extender_app
    from scheduler.settings import SchedulerSettings

    placer.warmup()
    nodes = build_nodes(n_nodes, seed)
    settings = SchedulerSettings(max_gpus_per_node=8)
    scratch = ExtenderContext.build(settings, MemoryBinder())
    scratch.cache.replace_nodes(nodes)
    rng = random.Random(seed + 1)
    names = [nd["metadata"]["name"] for nd in nodes]
    pods = []
    for i in range(n_pods):  # place the running pods as gpuplace would have, on random nodes
        g = rng.choices([1, 2, 4, 8], [70, 20, 8, 2])[0]
        req = GpuRequest(count=g, cpu_milli=4000, memory_mib=16384)
        for _ in range(50):
            target = rng.choice(names)
            placement = placer.choose(scratch.cache.state, target, req)
            if placement is not None:
                scratch.cache.state.allocate(f"p{i}", placement)
                pods.append(pod(f"run-{i}", g, {"gpuplace.io/gpus": encode_record(placement, [])}, target))
                break
    t0 = time.perf_counter()
    ctx = ExtenderContext.build(settings, MemoryBinder())
    ctx.cache.replace_nodes(nodes)
    ctx.cache.replace_pods(pods, listed_at=0.0)
    build = time.perf_counter() - t0
    ctx.warm = True
    state = ctx.cache.state
    busy = int((state.gpu_free_milli[: state.n_rows] < 1000).sum())
    free = {name: int((state.gpu_free_milli[row] >= 1000).sum()) for name, row in state.index.items()}
    del scratch, nodes, pods

    @web.middleware
    async def changed(request: web.Request, handler: Any) -> web.StreamResponse:
        """Each new pod sees a cluster changed since the previous one, as after a bind in real scheduling:
        without it every pod of one shape would share one evaluation and flatter any memo."""
        if request.path.endswith("/filter"):
            ctx.cache.state.version += 1
        return await handler(request)

    async def main() -> None:
        app = make_extender_app(ctx)
        if churn:
            app.middlewares.append(changed)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        conn.send(
            {
                "build_s": build,
                "pods": len(ctx.cache.pods),
                "busy_gpus": busy,
                "pid": os.getpid(),
                "free": free,
            }
        )
        await asyncio.Event().wait()

    asyncio.run(main())


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system, system) CPU time of a process (/proc/<pid>/stat fields 14 and 15)."""
    with Path(f"/proc/{pid}/stat").open() as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck, int(fields[12]) / tck


def rss_mib(pid: int) -> float:
    with Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, base: str, session: aiohttp.ClientSession, rng: random.Random) -> None:
        self.base, self.session, self.rng = base, session, rng

    async def _post(self, verb: str, body: bytes) -> Any:
        async with self.session.post(
            f"{self.base}/scheduler/{verb}", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{verb}: HTTP {r.status}: {data[:200]!r}")
            return orjson.loads(data)

    async def pair(
        self, names: list[str] | dict[int, list[str]] | None, nodes: list[dict[str, Any]] | None
    ) -> float:
        gpus, ann = self.rng.choice(SHAPES)
        if isinstance(names, dict):  # what NodeResourcesFit leaves: nodes with enough free GPUs by count
            names = names[gpus]
        p = pod(f"new-{self.rng.randrange(10**9)}", gpus, ann)
        t0 = time.perf_counter()
        f = await self._post(
            "filter",
            orjson.dumps(
                {"Pod": p, "Nodes": None if nodes is None else {"items": nodes}, "NodeNames": names}
            ),
        )
        if f["Error"]:
            raise RuntimeError(f["Error"])
        if nodes is None:
            body = orjson.dumps({"Pod": p, "Nodes": None, "NodeNames": f["NodeNames"]})
        else:
            body = orjson.dumps({"Pod": p, "Nodes": f["Nodes"], "NodeNames": None})
        await self._post("prioritize", body)
        return time.perf_counter() - t0


async def run_mode(
    base: str,
    mode: str,
    pairs: int,
    concurrency: int,
    names: list[str],
    nodes: list[dict[str, Any]],
    server_pid: int,
    free: dict[str, int],
) -> dict[str, float]:
    rng = random.Random(3)
    intree = {g: [n for n in names if free[n] >= g] for g, _ in SHAPES}

    def args() -> tuple[list[str] | dict[int, list[str]] | None, list[dict[str, Any]] | None]:
        if mode == "full-nodes":
            return None, nodes
        if mode == "names-new":
            return rng.sample(names, len(names) - rng.randrange(1, 500)), None
        if mode == "names-intree":
            return intree, None
        return names, None

    conn = aiohttp.TCPConnector(limit=concurrency + 1)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:
        client = Client(base, s, rng)
        for _ in range(min(20, pairs)):
            await client.pair(*args())  # warm: kernels, name cache, connections
        cpu0 = cpu_seconds(server_pid)
        lat = [await client.pair(*args()) for _ in range(pairs)]
        cpu1 = cpu_seconds(server_pid)
        server_cpu, server_sys = ((b - a) / pairs for a, b in zip(cpu0, cpu1, strict=True))
        done = 0
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while done < pairs:
                done += 1
                await client.pair(*args())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "p50": statistics.median(lat) * 1e3,
        "p99": q[98] * 1e3,
        "pps": pairs / wall,
        "cpu": server_cpu * 1e3,
        "sys": server_sys * 1e3,
    }


def start_server(a: argparse.Namespace, code: str | None) -> tuple[mp.process.BaseProcess, str, dict[str, Any]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parent, child = mp.Pipe()
    server = mp.get_context("fork").Process(
        target=serve, args=(port, a.nodes, a.pods, a.seed, child, code, not a.no_churn), daemon=True
    )
    server.start()
    info = parent.recv()
    info["rss_built"] = rss_mib(info["pid"])
    return server, f"http://127.0.0.1:{port}", info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--full-nodes-pairs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modes", default="names-all,names-intree,names-new,full-nodes")
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also serve from this checkout (e.g. a `git worktree add` of an older commit); each mode runs "
        "on both servers in turn and the table gets a new/baseline row",
    )
    ap.add_argument(
        "--no-churn",
        action="store_true",
        help="do not mark the cluster changed before each filter (memos then hit across pods)",
    )
    a = ap.parse_args()
    servers = {"this": start_server(a, None)}
    if a.baseline:
        servers = {"baseline": start_server(a, a.baseline), **servers}
    nodes = build_nodes(a.nodes, a.seed)
    names = [n["metadata"]["name"] for n in nodes]
    console = Console(width=140)
    for label, (_, _, info) in servers.items():
        console.print(
            f"{label}: {a.nodes} nodes × 8 GPUs, {info['pods']} running pods, {info['busy_gpus']} GPUs busy; "
            f"cache rebuilt from lists in {info['build_s']:.2f} s; server RSS {info['rss_built']:.0f} MiB"
        )
    console.print(
        f"full-nodes request size ≈ {len(orjson.dumps({'items': nodes})) / 1e6:.1f} MB, "
        f"names ≈ {len(orjson.dumps(names)) / 1e3:.0f} KB; churn {'off' if a.no_churn else 'on'}"
    )
    table = Table(
        title=f"filter+prioritize pairs over loopback HTTP (concurrency {a.concurrency} for pairs/s)"
    )
    for col in (
        "mode",
        "server",
        "pairs",
        "p50 ms/pair",
        "p99 ms/pair",
        "pairs/s",
        "server CPU ms/pair",
        "of which system",
        "server RSS MiB",
    ):
        table.add_column(col, justify="right")
    wanted = a.modes.split(",")
    for mode, pairs in (
        ("names-all", a.pairs),
        ("names-intree", a.pairs),
        ("names-new", max(1, a.pairs // 4)),
        ("full-nodes", a.full_nodes_pairs),
    ):
        if pairs <= 0 or mode not in wanted:
            continue
        results = {}
        for label, (_, base, info) in servers.items():
            r = asyncio.run(
                run_mode(
                    base,
                    mode,
                    pairs,
                    a.concurrency if mode != "full-nodes" else 1,
                    names,
                    nodes,
                    info["pid"],
                    info["free"],
                )
            )
            r["rss"] = rss_mib(info["pid"])
            results[label] = r
            table.add_row(
                mode,
                label,
                str(pairs),
                f"{r['p50']:.2f}",
                f"{r['p99']:.2f}",
                f"{r['pps']:.0f}",
                f"{r['cpu']:.2f}",
                f"{r['sys']:.2f}",
                f"{r['rss']:.0f}",
            )
        if len(results) == 2:
            new, old = results["this"], results["baseline"]
            table.add_row(
                mode,
                "this/baseline",
                "",
                *(f"{new[k] / old[k]:.2f}" if old[k] else "" for k in ("p50", "p99", "pps", "cpu", "sys", "rss")),
                end_section=True,
            )
    console.print(table)
    for server, _, _ in servers.values():
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
