"""`bench/gang.py --real`: the gang workload on the local control plane (kube-apiserver, etcd and
kube-scheduler v1.36.3 from GPUPLACE_LOCAL_BIN; 64 static fake HGX H100 nodes in 8 cliques of 8,
racks of 2 cliques, no kubelet).

Per seed, the arrival sequence of bench/gang.py (gangs of 2-16 members x 8 GPUs, single pods of 1-8
GPUs) squeezed into `--span` seconds, durations scaled alike. A gang's members are created in shuffled
order with 0-0.3 s gaps (slow arrival); once every member of an item is bound it "runs" for its
duration and is deleted (grace 0). Measured over the arrivals plus `--tail` seconds. Arms, one after
another on the same nodes, each with its own kube-scheduler (percentageOfNodesToScore 100):
- gpuplace as extender and binder, default gang settings (TTL 120 s, barrier 8 s);
- all-or-nothing without topology: the same gpuplace, started after the nodes' clique, rack and zone
  labels were removed (its planner then knows one domain, the cluster; its node rows follow the names,
  so in clique order: ties broken by row give it some locality by accident);
- kube-scheduler alone (no extender; pods carry the GPU requests and toleration the webhook would add).

Time to full bind is counted from the creation of a gang's last member to its last member's bind
(issue 11 item 5: within 15 s when capacity exists). "Capacity free" marks gangs for which, when their
last member was created, enough whole nodes were free by the bench's own count of bound, undeleted pods
(it cannot see plans other gangs hold inside gpuplace, so such a gang may still have to wait for one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gang import (
    CLIQUES,
    CLIQUES_PER_RACK,
    GPUPLACE,
    GPUS_PER_NODE,
    KSCHED,
    NO_TOPOLOGY,
    PER_CLIQUE,
    REQUIRED,
    Item,
    markdown,
    node_name,
    smallest_domain,
    workload,
)
from kubernetes_asyncio import client
from podwatch import PodWatch
from rich.console import Console
from rich.table import Table

from gpuplace.localcluster import ControlPlane, audit
from gpuplace.localcluster.fake_nodes import create_node, node_manifest
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import pod_manifest

TOPOLOGY_LABELS = ("nvidia.com/gpu.clique", "gpuplace.io/rack", "topology.kubernetes.io/zone")
CLIENT = {"qps": 5000, "burst": 5000}
TARGET = 15.0
SLUGS = {GPUPLACE: "gpuplace", REQUIRED: "required", NO_TOPOLOGY: "no-topology", KSCHED: "kube-scheduler"}
REAL_ARMS = (GPUPLACE, NO_TOPOLOGY, KSCHED)


@dataclass
class Gang:
    item: Item
    pods: list[str]
    last_created: float = 0.0
    capacity_free: bool = False
    full: float | None = None


@dataclass
class RealResult:
    arm: str
    seed: int
    gangs: int = 0
    full: int = 0
    smallest: int = 0
    alloc: float = 0.0
    busy: float = 0.0
    singles: int = 0
    singles_bound: int = 0
    partial_end: int = 0
    partial_gpus: int = 0
    max_partial_s: float = 0.0
    idle_gpu_hours: float = 0.0
    latencies: list[float] = field(default_factory=list)
    latencies_free: list[float] = field(default_factory=list)
    free_unbound: int = 0
    slow: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def scaled(seed: int, a: argparse.Namespace) -> list[Item]:
    items = workload(seed, a.items, load=a.load)
    f = a.span / items[-1].arrival
    return [Item(it.name, it.members, it.gpus, it.arrival * f, it.duration * f, it.gang) for it in items]


def manifest(name: str, it: Item, arm: str) -> dict[str, Any]:
    labels = {"gpuplace.io/gang": it.name} if it.gang else None
    notes = {"gpuplace.io/gang-min-member": str(it.members)} if it.gang else None
    if it.gang and arm == REQUIRED:
        notes = {**(notes or {}), "gpuplace.io/gang-topology": "required-clique" if it.members <= PER_CLIQUE
                 else "required-rack"}  # fmt: skip
    cpu, mem = (8, 64) if it.gang else (2 * it.gpus, 16 * it.gpus)
    return pod_manifest(name, gpus=it.gpus, cpu=str(cpu), memory=f"{mem}Gi", gpu_requests=True,
                        tolerate_gpu_taint=True, labels=labels, annotations=notes)  # fmt: skip


async def set_topology(api: client.ApiClient, on: bool) -> None:
    core = client.CoreV1Api(api)
    for c in range(CLIQUES):
        for i in range(PER_CLIQUE):
            values = (f"cluster-{c}.0", f"r{c // CLIQUES_PER_RACK}", "z") if on else (None, None, None)
            body = {"metadata": {"labels": dict(zip(TOPOLOGY_LABELS, values, strict=True))}}
            await core.patch_node(node_name(c, i), body)  # type: ignore[arg-type]


async def ledger_audit(gp: GpuplaceServer | None, problems: list[str]) -> None:
    """gpuplace's reservation-ledger audit (GET /debug/gangs) once a second while the arm runs."""
    while gp is not None:
        status, body = await asyncio.to_thread(probe, f"{gp.extender_base}/debug/gangs", ca_file=gp.cp.ca_file,
                                               timeout=5)  # fmt: skip
        if status == 200:
            problems.extend(p for p in json.loads(body)["audit"] if p not in problems)
        await asyncio.sleep(1.0)


async def run_arm(cp: ControlPlane, arm: str, seed: int, items: list[Item], a: argparse.Namespace,
                  gp: GpuplaceServer | None, console: Console) -> RealResult:  # fmt: skip
    rng, r = random.Random(seed), RealResult(arm, seed)
    namespace = f"gang-s{seed}-{SLUGS[arm]}"
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        await core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
        watch = PodWatch(api, namespace)
        await watch.start()
        cfg = {**(gp.scheduler_config() if gp else {}), "percentageOfNodesToScore": 100,
               "clientConnection": dict(CLIENT)}  # fmt: skip
        process = await asyncio.to_thread(cp.start_scheduler, cfg, name=f"kube-scheduler-{namespace}")
        gangs: dict[str, Gang] = {}
        tasks: list[asyncio.Task[Any]] = []
        t0 = time.monotonic()
        end = t0 + items[-1].arrival + a.tail
        auditor = asyncio.create_task(ledger_audit(gp, r.problems))

        def used_gpus() -> tuple[list[int], int]:
            per_node = {node_name(c, i): 0 for c in range(CLIQUES) for i in range(PER_CLIQUE)}
            idle = 0
            for g in gangs.values():
                for p in g.pods:
                    if p in watch.bound and p not in watch.gone:
                        per_node[watch.bound[p][1]] += g.item.gpus
                        idle += g.item.gpus if g.item.gang and g.full is None else 0
            return list(per_node.values()), idle

        async def arrive(it: Item) -> None:
            await asyncio.sleep(max(0.0, t0 + it.arrival - time.monotonic()))
            g = gangs[it.name] = Gang(it, [f"{it.name}-{m:02d}" for m in range(it.members)])
            for m in rng.sample(range(it.members), it.members):
                await core.create_namespaced_pod(namespace, manifest(g.pods[m], it, arm))  # type: ignore[arg-type]
                g.last_created = time.monotonic()
                per_node, _ = used_gpus()
                g.capacity_free = sum(u == 0 for u in per_node) >= it.members  # the last member's counts
                if it.gang:
                    await asyncio.sleep(rng.uniform(0.0, 0.3))  # a bench, not a test: slow arrival

        async def leave(g: Gang) -> None:
            await asyncio.sleep(g.item.duration)
            for p in g.pods:
                with contextlib.suppress(client.ApiException):
                    await core.delete_namespaced_pod(p, namespace, grace_period_seconds=0)

        try:
            tasks = [asyncio.create_task(arrive(it)) for it in items]
            last, measured_until = time.monotonic(), t0 + items[-1].arrival
            while (now := time.monotonic()) < end:
                for g in list(gangs.values()):
                    if g.full is None and all(p in watch.bound for p in g.pods):
                        g.full = max(watch.bound[p][0] for p in g.pods)
                        tasks.append(asyncio.create_task(leave(g)))
                per_node, idle = used_gpus()
                dt = max(0.0, min(now, measured_until) - last)
                r.alloc += sum(per_node) * dt
                r.busy += (sum(per_node) - idle) * dt
                last = min(now, measured_until)
                await asyncio.sleep(0.1)
            total = CLIQUES * PER_CLIQUE * GPUS_PER_NODE
            r.alloc /= total * (measured_until - t0)
            r.busy /= total * (measured_until - t0)
            finish = time.monotonic()
            for g in gangs.values():
                bound = [watch.bound[p] for p in g.pods if p in watch.bound]
                if not g.item.gang:
                    r.singles += 1
                    r.singles_bound += bool(bound)
                    continue
                r.gangs += 1
                if bound:
                    done = g.full if g.full is not None else finish
                    r.idle_gpu_hours += sum(done - t for t, _ in bound) * g.item.gpus / 3600
                    r.max_partial_s = max(r.max_partial_s, max(t for t, _ in bound) - min(t for t, _ in bound)
                                          if g.full is not None else finish - min(t for t, _ in bound))  # fmt: skip
                if g.full is None:
                    if bound:
                        r.partial_end += 1
                        r.partial_gpus += len(bound) * g.item.gpus
                    if g.capacity_free and g.last_created:
                        r.free_unbound += 1
                        r.slow.append(
                            f"{g.item.name}x{g.item.members} never fully bound ({len(bound)} bound)"
                        )
                    continue
                r.full += 1
                r.smallest += smallest_domain([n for _, n in bound], g.item.members)
                lat = g.full - g.last_created
                r.latencies.append(lat)
                if g.capacity_free:
                    r.latencies_free.append(lat)
                    if lat > TARGET:
                        r.slow.append(f"{g.item.name}x{g.item.members} {lat:.1f} s")
            if arm != KSCHED:
                raw = await audit.list_raw(api, "pods", namespace=namespace)
                verdict = audit.audit(raw, await audit.list_raw(api, "nodes"))
                r.problems += verdict.problems[:10]
        finally:
            auditor.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(auditor, *tasks, return_exceptions=True)
            await asyncio.to_thread(cp.stop_process, process.name)
            await watch.stop()
            await core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)

            async def empty() -> bool:
                return not (await core.list_namespaced_pod(namespace, limit=1)).items

            await wait_until(empty, within=120, interval=0.5, what=f"pods of {namespace} deleted")
    console.print(
        f"  \\[{arm}] seed {seed}: {r.full}/{r.gangs} gangs bound, {r.partial_end} partial; slow: {r.slow}"
    )
    return r


async def run_all(a: argparse.Namespace, console: Console) -> list[RealResult]:
    arms = [x.strip() for x in a.arms.split(",") if x.strip()] if a.arms else list(REAL_ARMS)
    unknown = set(arms) - set(SLUGS)
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; choose from {list(SLUGS)}")
    out = []
    with ControlPlane(lifecycle=False) as cp:
        async with cp.api_client() as api:
            for c in range(CLIQUES):
                for i in range(PER_CLIQUE):
                    await create_node(api, node_manifest(node_name(c, i), "hgx-h100", topology=True))
        for seed in range(a.seeds):
            items = scaled(seed, a)
            for arm in arms:
                async with cp.api_client() as api:
                    await set_topology(api, arm != NO_TOPOLOGY)
                gp = None if arm == KSCHED else await asyncio.to_thread(
                    GpuplaceServer(cp, register_webhook=False).start)  # fmt: skip
                try:
                    out.append(await run_arm(cp, arm, seed, items, a, gp, console))
                finally:
                    if gp is not None:
                        await asyncio.to_thread(gp.close)
    return out


COLUMNS = ("arm", "seed", "gangs fully bound", "in smallest domain", "GPU allocation", "of it doing work",
           "single pods bound", "partial gangs at end (GPUs)", "longest partial s", "idle GPU-h in partial gangs",
           "time to full bind p50 / max s", "capacity free: p50 / max s", "capacity free: over 15 s or never",
           "audit")  # fmt: skip


def row(arm: str, seed: str, rs: list[RealResult]) -> list[str]:
    lat = [x for r in rs for x in r.latencies]
    free = [x for r in rs for x in r.latencies_free]
    n = len(rs)
    over = sum(sum(x > TARGET for x in r.latencies_free) + r.free_unbound for r in rs)
    problems = [p for r in rs for p in r.problems]
    return [
        arm,
        seed,
        f"{sum(r.full for r in rs) / n:g}/{sum(r.gangs for r in rs) / n:g}",
        f"{sum(r.smallest for r in rs) / max(1, sum(r.full for r in rs)):.0%}",
        f"{statistics.mean(r.alloc for r in rs):.1%}",
        f"{statistics.mean(r.busy for r in rs):.1%}",
        f"{sum(r.singles_bound for r in rs) / max(1, sum(r.singles for r in rs)):.0%}",
        f"{sum(r.partial_end for r in rs) / n:g} ({sum(r.partial_gpus for r in rs) / n:g})",
        f"{max(r.max_partial_s for r in rs):.1f}",
        f"{statistics.mean(r.idle_gpu_hours for r in rs):.3f}",
        f"{statistics.median(lat):.2f} / {max(lat):.1f}" if lat else "-",
        f"{statistics.median(free):.2f} / {max(free):.1f}" if free else "-",
        f"{over}/{sum(len(r.latencies_free) + r.free_unbound for r in rs)}",
        "ok" if not problems else "; ".join(problems[:2]),
    ]


def real_main(a: argparse.Namespace) -> None:
    console = Console(width=260)
    results = asyncio.run(run_all(a, console))
    arms = list(dict.fromkeys(r.arm for r in results))
    per_seed = [row(r.arm, str(r.seed), [r]) for r in results]
    means = [row(arm, f"mean of {a.seeds}", [r for r in results if r.arm == arm]) for arm in arms]
    title = (f"gangs on the local control plane (kube-scheduler v1.36.3): {CLIQUES * PER_CLIQUE} nodes x 8 GPUs in "
             f"{CLIQUES} cliques of {PER_CLIQUE}, racks of {CLIQUES_PER_RACK}; {a.items} arrivals per seed over "
             f"{a.span:g} s, offered load {a.load:g}x, measured to {a.tail:g} s after the last")  # fmt: skip
    for caption, rows in (("per seed", per_seed), ("mean", means)):
        table = Table(title=f"{title}: {caption}")
        for col in COLUMNS:
            table.add_column(col, justify="right")
        for x in rows:
            table.add_row(*x)
        console.print(table)
    for r in results:
        if r.slow or r.problems:
            console.print(f"{r.arm} seed {r.seed}: slow {r.slow}; problems {r.problems}")
    if a.out:
        cmd = (f"GPUPLACE_LOCAL_BIN=deploy/local/bin .venv/bin/python bench/gang.py --real --seeds {a.seeds} "
               f"--items {a.items} --span {a.span:g} --tail {a.tail:g} --load {a.load:g}")  # fmt: skip
        text = (
            f"`{cmd}`\n\n"
            + markdown(f"{title}: mean", COLUMNS, means)
            + "\n"
            + markdown("per seed", COLUMNS, per_seed)
        )
        Path(a.out).write_text(text)
