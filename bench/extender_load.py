"""Loopback HTTP load on the extender: filter+prioritize pairs as kube-scheduler sends them.

The cluster (bench/extender_cluster.py): 5,000 nodes × 8 GPUs, 20,000 running pods by default
(`--mix dense --pods 50000` for the memory figure). The server (the real aiohttp app) runs in its own
process; this process is the client, and both share the machine's cores: the table gives each one's CPU
per pair, so a reader can see what a dedicated core would do.

A pair = POST filter, then POST prioritize with the NodeNames the filter returned (what
kube-scheduler does). Pods vary (1/2/4/8 GPUs, NVLink required/preferred, fractional shares, model
restrictions) with a fresh UID each. Modes:
- names-all: nodeCacheCapable, all 5,000 names every call (worst case: nothing filtered in-tree);
- names-intree: nodeCacheCapable, per pod shape the nodes with enough free GPUs by count — what
  kube-scheduler's NodeResourcesFit leaves before the extender's filter runs (the production steady state);
- names-distinct: as names-all, but every pod asks for a different cpu amount, so no two pods share a
  request and nothing computed for one pod serves the next (the memo helps only filter → prioritize);
- names-new: nodeCacheCapable, a different list every call (the byte cache misses every time);
- full-nodes: nodeCacheCapable=false, 5,000 Node objects (~7 KB each, like real GFD nodes) per call.
Churn: before each filter the server binds one 1-GPU pod on a random node with a free GPU and, past 256
such pods, releases the oldest — the cluster changes between two pods as it does in real scheduling, one
node at a time; `--no-churn` turns that off.

Latency: sequential pairs (p50/p99 per pair, client-measured); throughput: `--concurrency` pairs in
flight. `--baseline CHECKOUT` serves the same cluster from another checkout too (the child process
imports gpuplace from there) and prints this/baseline ratios from the one run — the machine is shared
and noisy, so compare side by side, not across runs; the servers take turns in `--rounds` rounds per
mode, so a change in the machine's load hits both alike. Targets (issue 14): ≥ 1,000 pairs/s at 4 in
flight, p99 ≤ 2 ms per pair one at a time, server RSS ≤ 400 MB at 5,000 nodes / 50,000 pods.

    .venv/bin/python bench/extender_load.py [--pairs 2000] [--full-nodes-pairs 5] [--concurrency 4]
        [--baseline /tmp/old] [--modes names-all,names-intree] [--pods 50000 --mix dense]
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
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extender_cluster as cluster

MODES = ("names-all", "names-intree", "names-distinct", "names-new", "full-nodes")


# ---- the server process ----------------------------------------------------------------------------------
class Churn:
    """One bind per pod (a 1-GPU pod on a random node with a free GPU), the oldest of 256 released.

    The GPU is picked with one numpy test (every bench GPU is whole and healthy), not with placer.choose:
    the server's CPU per pair should be filter's and prioritize's, not the bench's."""

    def __init__(self, ctx: Any, seed: int) -> None:
        self.ctx, self.rng = ctx, random.Random(seed)
        self.live: deque[str] = deque()
        self.n = 0

    def step(self) -> None:
        from placement_core import Placement

        state = self.ctx.cache.state
        if len(self.live) >= 256:
            state.release(self.live.popleft())
        for _ in range(20):
            row = self.rng.randrange(state.n_rows)
            free = np.flatnonzero(state.gpu_free_milli[row] >= 1000)
            if len(free):
                self.n += 1
                state.allocate(f"churn-{self.n}", Placement(state.names[row], gpus=(int(free[0]),)))
                self.live.append(f"churn-{self.n}")
                return


def serve(a: argparse.Namespace, port: int, conn: Connection, code: str | None) -> None:
    if code:  # a baseline: this child imports gpuplace from another checkout (the parent never did)
        sys.path.insert(0, code)
    from aiohttp import web

    from placement_core import placer
    from scheduler.http import make_extender_app

    placer.warmup()
    built = cluster.build(a.nodes, a.pods, a.seed, a.mix)
    ctx = built.ctx
    churn = Churn(ctx, a.seed + 2)

    @web.middleware
    async def changed(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/filter"):
            churn.step()
        return await handler(request)

    if a.profile and not code:  # cProfile of the serving loop, written when the parent terminates us
        import cProfile
        import signal

        prof = cProfile.Profile(time.process_time)  # CPU time: a shared machine stalls wall time

        def dump(*_: object) -> None:
            prof.disable()
            prof.dump_stats(a.profile)
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
        prof.enable()

    async def main() -> None:
        app = make_extender_app(ctx)
        if not a.no_churn:
            app.middlewares.append(changed)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        info = {k: v for k, v in vars(built).items() if k != "ctx"}
        conn.send({**info, "pid": os.getpid(), "pods": len(ctx.cache.pods)})
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(
    a: argparse.Namespace, code: str | None
) -> tuple[mp.process.BaseProcess, str, dict[str, Any]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parent, child = mp.Pipe()
    server = mp.get_context("fork").Process(target=serve, args=(a, port, child, code), daemon=True)
    server.start()
    info = parent.recv()
    info["rss_built"] = rss_mib(info["pid"])
    info["rss_peak"] = rss_mib(info["pid"], "VmHWM")
    return server, f"http://127.0.0.1:{port}", info


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system, system) CPU time of a process (/proc/<pid>/stat fields 14 and 15)."""
    with Path(f"/proc/{pid}/stat").open() as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck, int(fields[12]) / tck


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident size (VmRSS) or its peak so far (VmHWM) of a process, MiB."""
    with Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- the client (this process) -----------------------------------------------------------------------------
class Client:
    def __init__(self, base: str, session: aiohttp.ClientSession, rng: random.Random, distinct: bool) -> None:
        self.base, self.session, self.rng, self.distinct = base, session, rng, distinct

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
        gpus, ann = self.rng.choice(cluster.SHAPES)
        if isinstance(names, dict):  # what NodeResourcesFit leaves: nodes with enough free GPUs by count
            names = names[gpus]
        cpu = f"{4000 + self.rng.randrange(100_000)}m" if self.distinct else "4"
        p = cluster.pod(f"new-{self.rng.randrange(10**9)}", gpus, ann, cpu=cpu)
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
) -> Run:
    rng = random.Random(3)
    intree = {g: [n for n in names if free[n] >= g] for g, _ in cluster.SHAPES}

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
        client = Client(base, s, rng, distinct=mode == "names-distinct")
        for _ in range(min(20, pairs)):
            await client.pair(*args())  # warm: kernels, name cache, connections
        cpu0, mine0 = cpu_seconds(server_pid), time.process_time()
        lat = [await client.pair(*args()) for _ in range(pairs)]
        cpu1, mine1 = cpu_seconds(server_pid), time.process_time()
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
    return Run(lat, pairs, wall, server_cpu * pairs, server_sys * pairs, mine1 - mine0)


@dataclass
class Run:
    """One server's share of a mode: sums over its rounds."""

    lat: list[float] = field(default_factory=list)
    pairs: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    sys: float = 0.0
    client: float = 0.0

    def add(self, r: Run) -> None:
        self.lat += r.lat
        self.pairs += r.pairs
        self.wall += r.wall
        self.cpu, self.sys, self.client = self.cpu + r.cpu, self.sys + r.sys, self.client + r.client

    def row(self) -> dict[str, float]:
        q = statistics.quantiles(self.lat, n=100, method="inclusive")
        per = 1e3 / self.pairs
        return {
            "p50": statistics.median(self.lat) * 1e3,
            "p99": q[98] * 1e3,
            "pps": self.pairs / self.wall,
            "cpu": self.cpu * per,
            "sys": self.sys * per,
            "client": self.client * per,
        }


# ---- the table -------------------------------------------------------------------------------------------
COLUMNS = {  # result key → column title
    "p50": "p50 ms/pair",
    "p99": "p99 ms/pair",
    "pps": "pairs/s",
    "cpu": "server CPU ms/pair",
    "sys": "of which system",
    "client": "client CPU ms/pair",
    "rss": "server RSS MiB",
    "peak": "peak RSS MiB",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument(
        "--mix", choices=("whole", "dense"), default="whole", help="running pods (extender_cluster)"
    )
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--full-nodes-pairs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also serve from this checkout (e.g. a `git worktree add` of an older commit); each mode runs "
        "on both servers in turn and the table gets a new/baseline row",
    )
    ap.add_argument(
        "--no-churn", action="store_true", help="no bind between two pods (memos then hit across pods)"
    )
    ap.add_argument(
        "--rounds", type=int, default=4, help="with --baseline: the servers take turns, pairs split in rounds"
    )
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of this checkout's server to FILE")
    a = ap.parse_args()
    servers = {"this": start_server(a, None)}
    if a.baseline:
        servers = {"baseline": start_server(a, a.baseline), **servers}
    nodes = cluster.build_nodes(a.nodes, a.seed)
    names = [n["metadata"]["name"] for n in nodes]
    console = Console(width=150)
    for label, (_, _, info) in servers.items():
        console.print(
            f"{label}: {a.nodes} nodes × 8 GPUs, {info['pods']} running pods ({info['gpu_pods']} with GPUs, "
            f"{info['share_pods']} of them shares; {info['cpu_pods']} CPU-only), {info['busy_gpus']} GPUs "
            f"busy; cache rebuilt from lists in {info['build_s']:.2f} s; server RSS {info['rss_built']:.0f} MiB "
            f"(peak {info['rss_peak']:.0f})"
        )
    console.print(
        f"full-nodes request size ≈ {len(orjson.dumps({'items': nodes})) / 1e6:.1f} MB, "
        f"names ≈ {len(orjson.dumps(names)) / 1e3:.0f} KB; churn {'off' if a.no_churn else 'on'}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    table = Table(
        title=f"filter+prioritize pairs over loopback HTTP (concurrency {a.concurrency} for pairs/s)"
    )
    for col in ("mode", "server", "pairs", *COLUMNS.values()):
        table.add_column(col, justify="right")
    wanted = a.modes.split(",")
    for mode in MODES:
        pairs = {"names-new": max(1, a.pairs // 4), "full-nodes": a.full_nodes_pairs}.get(mode, a.pairs)
        if pairs <= 0 or mode not in wanted:
            continue
        runs = {label: Run() for label in servers}
        rounds = max(1, min(a.rounds, pairs // 100))
        for i in range(rounds):  # the servers take turns, so a change in the machine's load hits both
            for label, (_, base, info) in servers.items():
                concurrency = a.concurrency if mode != "full-nodes" else 1
                part = pairs // rounds + (1 if i < pairs % rounds else 0)
                runs[label].add(
                    asyncio.run(run_mode(base, mode, part, concurrency, names, nodes, info["pid"], info["free"]))
                )
        results = {}
        for label, (_, _, info) in servers.items():
            r = results[label] = runs[label].row()
            r["rss"], r["peak"] = rss_mib(info["pid"]), rss_mib(info["pid"], "VmHWM")
            table.add_row(
                mode,
                label,
                str(pairs),
                *(f"{r[k]:.0f}" if k in ("pps", "rss", "peak") else f"{r[k]:.2f}" for k in COLUMNS),
            )
        if len(results) == 2:
            new, old = results["this"], results["baseline"]
            table.add_row(
                mode,
                "this/baseline",
                "",
                *(f"{new[k] / old[k]:.2f}" if old[k] else "" for k in COLUMNS),
                end_section=True,
            )
    console.print(table)
    console.print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for server, _, _ in servers.values():
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
