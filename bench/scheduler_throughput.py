"""Scheduling throughput of upstream kube-scheduler with and without gpuplace, in one run.

Real kube-apiserver + etcd + kube-scheduler v1.36.3 on loopback (gpuplace.localcluster), 1,000 fake
GPU nodes (600 HGX H100, 200 DGX-1 V100, 100 A100 with MIG, 100 L4), 2,000 GPU pods (1, 2 or 4 whole
GPUs, a few NVLink-required, some MIG 1g.10gb; one seeded sequence used by every run). Each run:
1. the pods are created while no scheduler runs (they queue up; the gpuplace webhook is registered in
   every run, so every run schedules identical, mutated pods);
2. kube-scheduler starts and schedules them; a watch records when each pod gets its node;
3. throughput = pods bound / (last binding − first binding); then the scheduler stops and the pods
   are deleted, so every run starts from empty nodes.
Runs: kube-scheduler alone with its defaults (adaptive percentageOfNodesToScore: 42% of 1,000 nodes),
kube-scheduler alone scoring every node (percentageOfNodesToScore 100, what deploy/scheduler's
configuration sets so that filter sees every node), kube-scheduler with gpuplace as extender exactly as
deploy/scheduler configures it (filter, prioritize, bind over HTTPS, nodeCacheCapable, 100%), and the
same with the default node sampling (separates the cost of scoring every node from the extender's),
and, when asked for (`--runs ...,gpuplace-decisive,gpuplace-no-intent,gpuplace-decisive-no-intent`), more gpuplace processes
with `decisive: true` (filter leaves one node, so kube-scheduler scores nothing), `bind_intent: false` (no
API write before each Binding), or both; scheduler/README.md says what each gives up. `--pprof DIR` saves Go
CPU profiles of kube-scheduler and kube-apiserver for each run (`go tool pprof -top FILE`).
Every run uses
clientConnection qps/burst 5000 so kube-scheduler's own client rate limit (default 50 QPS, which would
cap the runs where kube-scheduler binds, not gpuplace) does not decide the result. Goal: gpuplace ≥ 0.8×
kube-scheduler alone. The gpuplace run is audited afterwards: no GPU may be double-booked.

pods/s swings by ±40% between runs on a shared 2-core machine, so each run also reports the CPU time
(user + system, from /proc/<pid>/stat) that gpuplace, kube-scheduler, kube-apiserver and etcd spent in
the measured window (kube-scheduler start → last pod seen bound; kube-scheduler's whole life, as it
starts in the window), and their sum per pod bound. CPU-seconds are steadier than wall-clock rates
when a neighbour takes the cores, and they say where a change saved (or moved) work.

    .venv/bin/python bench/scheduler_throughput.py [--nodes 1000] [--pods 2000] [--runs alone,alone-100,gpuplace]

Everything runs on this machine: apiserver, etcd, scheduler, gpuplace and this client share its cores,
so absolute numbers depend on the machine and its load; the ratio measured in one run is the result.
The per-run record and the tables it prints: bench/throughput_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import ssl
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from rich.console import Console

from gpuplace.localcluster import ControlPlane, audit, binaries
from gpuplace.localcluster.fake_nodes import create_node, node_manifest
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import pending_reason, pod_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.podwatch import PodWatch
from bench.throughput_report import RunResult, cpu_table, summary, table

NODE_MIX = (("hgx-h100", 0.6), ("dgx1-v100", 0.2), ("a100-80gb-mig", 0.1), ("l4", 0.1))
CLIENT = {"qps": 5000, "burst": 5000}
CONCURRENCY = 24
RESULTS = Path(__file__).parent / "results" / "scheduler_throughput.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) in seconds; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces and ')'
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def fetch_pprof(url: str, token: str, ca_file: Path, out: Path, seconds: int) -> None:
    """Save a Go CPU profile (`/debug/pprof/profile`) of a control-plane process; read it with
    `go tool pprof -top FILE` (the profile carries its function names)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(f"{url}/debug/pprof/profile?seconds={seconds}",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(request, context=context, timeout=seconds + 30) as response:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(response.read())


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: v for name, pid in pids.items() if (v := cpu_seconds(pid)) is not None}


def harness_pids(cp: ControlPlane, gp: GpuplaceServer | None) -> dict[str, int]:
    """PIDs of the long-lived processes of the run (kube-scheduler is added when it starts)."""
    pids: dict[str, int] = {n: cp.processes[n].pid for n in ("kube-apiserver", "etcd") if n in cp.processes}
    if gp is not None and gp.process is not None:
        pids["gpuplace"] = gp.process.pid
    return pids


def node_manifests(n: int) -> list[dict[str, Any]]:
    out = []
    counts = [round(n * share) for _, share in NODE_MIX]
    counts[0] += n - sum(counts)
    for (preset, _), count in zip(NODE_MIX, counts, strict=True):
        out += [node_manifest(f"{preset}-{i:04d}", preset, topology=True, zone=f"zone-{i % 4}",
                              rack=f"rack-{i % 50}") for i in range(count)]  # fmt: skip
    return out


def pod_sequence(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pods = []
    for i in range(n):
        roll = rng.random()
        name = f"p-{i:05d}"
        if roll < 0.08:
            pods.append(pod_manifest(name, gpus=rng.choice((1, 2)), mig="1g.10gb", cpu="1", memory="4Gi"))
            continue
        gpus = 1 if roll < 0.6 else (2 if roll < 0.85 else 4)
        notes = {"gpuplace.io/nvlink": "required"} if gpus == 4 else None
        pods.append(pod_manifest(name, gpus=gpus, cpu=str(2 * gpus), memory=f"{16 * gpus}Gi", annotations=notes))
    return pods


async def bounded(coros: list[Any], limit: int = CONCURRENCY) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


def extender_latency(gp: GpuplaceServer | None) -> dict[str, tuple[float, float]]:
    """verb → (request count, seconds summed) from gpuplace's /metrics histogram."""
    if gp is None:
        return {}
    status, body = probe(f"{gp.extender_base}/metrics", ca_file=gp.cp.ca_file, timeout=10)
    out: dict[str, list[float]] = {}
    for line in body.splitlines() if status == 200 else []:
        for suffix, slot in (("_count", 0), ("_sum", 1)):
            head = f"gpuplace_extender_request_seconds{suffix}{{"
            if line.startswith(head):
                verb = line.split('verb="', 1)[1].split('"', 1)[0]
                out.setdefault(verb, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


async def create_nodes(cp: ControlPlane, n: int) -> None:
    async with cp.api_client() as api:
        await bounded([create_node(api, m) for m in node_manifests(n)])


async def one_run(cp: ControlPlane, name: str, description: str, scheduler_config: dict[str, Any],
                  pods: list[dict[str, Any]], console: Console, *, stall: float = 60.0,
                  gp: GpuplaceServer | None = None, cpu_gp: GpuplaceServer | None = None,
                  pprof: Path | None = None) -> RunResult:
    namespace = f"bench-{name}"
    result = RunResult(name, description, len(pods))
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        ns: Any = {"metadata": {"name": namespace}}
        await core.create_namespace(ns)
        t = time.monotonic()
        await bounded([core.create_namespaced_pod(namespace, p) for p in pods])  # type: ignore[arg-type]
        console.print(f"  \\[{name}] created {len(pods)} pods in {time.monotonic() - t:.1f}s; starting kube-scheduler")
        before = extender_latency(gp)
        watch = PodWatch(api, namespace)
        await watch.start()
        pids = harness_pids(cp, cpu_gp or gp)
        cpu_before = cpu_snapshot(pids)
        started = time.monotonic()
        config = {**scheduler_config, "clientConnection": dict(CLIENT)}
        extra = ["--authorization-always-allow-paths=/healthz,/readyz,/livez,/debug/pprof/profile"] if pprof else []
        process = await asyncio.to_thread(cp.start_scheduler, config, name=f"kube-scheduler-{name}",
                                          extra_args=extra)  # fmt: skip
        pids["kube-scheduler"] = process.pid
        profiles = []
        if pprof is not None:  # the first 15 s of the run, from each Go process
            targets = {"kube-scheduler": f"https://127.0.0.1:{process.extra['port']}", "kube-apiserver": cp.server}
            profiles = [asyncio.create_task(asyncio.to_thread(fetch_pprof, url, cp.admin_token, cp.ca_file,
                                                              pprof / f"{name}-{what}.pprof", 15))
                        for what, url in targets.items()]  # fmt: skip
        cpu_before["kube-scheduler"] = 0.0  # a fresh process: its start-up is part of the window
        try:
            last_progress, last_count = time.monotonic(), 0
            while len(watch.bound) < len(pods):
                await asyncio.sleep(0.5)
                if len(watch.bound) != last_count:
                    last_progress, last_count = time.monotonic(), len(watch.bound)
                elif time.monotonic() - last_progress > stall:
                    waiting = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"] not in watch.bound)
                    why = await pending_reason(api, namespace, waiting)
                    console.print(f"  \\[{name}] [red]no progress for {stall:.0f}s at {last_count} bound; "
                                  f"{waiting}: {why.text if why else 'no reason recorded'}[/red]")
                    break
            cpu_after = cpu_snapshot(pids)
            for task in profiles:
                try:
                    await task
                except Exception as e:  # a profile is an extra: the run's figures stand without it
                    console.print(f"  \\[{name}] [yellow]no CPU profile: {e!r}[/yellow]")
            result.cpu_seconds = {k: round(cpu_after[k] - cpu_before[k], 2) for k in pids
                                  if k in cpu_after and k in cpu_before}  # fmt: skip
        finally:
            await asyncio.to_thread(cp.stop_process, process.name)
            await watch.stop()
        after = extender_latency(gp)
        for verb, (n, total) in after.items():
            n0, t0 = before.get(verb, (0.0, 0.0))
            if n > n0:
                result.extender_ms[verb] = round(1000 * (total - t0) / (n - n0), 2)
        times = sorted(t for t, _ in watch.bound.values())
        result.bound = len(times)
        if len(times) >= 2:
            result.seconds = times[-1] - times[0]
            result.pods_per_second = (len(times) - 1) / result.seconds if result.seconds else 0.0
            result.to_first_bind = times[0] - started
            gaps = [1000 * (b - a) for a, b in itertools.pairwise(times)]
            result.interval_p50_ms = statistics.median(gaps)
            result.interval_p99_ms = statistics.quantiles(gaps, n=100)[98] if len(gaps) >= 100 else max(gaps)
        raw_pods = await audit.list_raw(api, "pods", namespace=namespace)
        verdict = audit.audit(raw_pods, await audit.list_raw(api, "nodes"), require_records=gp is not None)
        result.problems = verdict.problems[:20]
        await core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        await wait_until(lambda: _empty(core, namespace), within=120, what=f"pods of {namespace} deleted")
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_seconds.items())
        console.print(f"  \\[{name}] {result.bound}/{len(pods)} bound, {result.pods_per_second:.1f} pods/s, "
                      f"CPU s: {cpu}, "
                      f"audit: {'ok' if verdict.ok else f'{len(verdict.problems)} problems'}")
    return result


async def _empty(core: client.CoreV1Api, namespace: str) -> bool:
    return not (await core.list_namespaced_pod(namespace, limit=1)).items


async def main_async(args: argparse.Namespace, console: Console) -> list[RunResult]:
    pods = pod_sequence(args.pods)
    results: list[RunResult] = []
    # The static world (no kube-controller-manager, no kwok): thousands of nodes renewing kwok leases
    # would load the API server and the same 2 cores the scheduler is measured on.
    with ControlPlane(lifecycle=False, apiserver_args=["--profiling=true"] if args.pprof else ()) as cp:
        console.print(f"control plane {cp.server}; creating {args.nodes} nodes...")
        t = time.monotonic()
        await create_nodes(cp, args.nodes)
        console.print(f"  {args.nodes} nodes in {time.monotonic() - t:.1f}s")
        gp = await asyncio.to_thread(GpuplaceServer(cp, extender_https=not args.http).start)
        variants = {  # more gpuplace processes (same code), one per run asked for
            "gpuplace-decisive": {"decisive": True},
            "gpuplace-no-intent": {"bind_intent": False},
            "gpuplace-decisive-no-intent": {"decisive": True, "bind_intent": False},
        }
        extra: dict[str, GpuplaceServer] = {}
        for name, settings in variants.items():
            if name in args.runs.split(","):
                extra[name] = await asyncio.to_thread(GpuplaceServer(
                    cp, name=name, extender_https=not args.http, register_webhook=False,
                    settings={"scheduler": settings}).start)  # fmt: skip
        try:
            runs = {
                "alone": ("kube-scheduler alone (defaults)", {}),
                "alone-100": ("kube-scheduler alone, percentageOfNodesToScore 100",
                              {"percentageOfNodesToScore": 100}),
                "gpuplace": ("kube-scheduler + gpuplace extender", gp.scheduler_config()),
                "gpuplace-sampled": ("kube-scheduler + gpuplace, default percentageOfNodesToScore",
                                     {k: v for k, v in gp.scheduler_config().items()
                                      if k != "percentageOfNodesToScore"}),
            }  # fmt: skip
            described = {"gpuplace-decisive": "decisive mode (no scoring)",
                         "gpuplace-no-intent": "bind_intent: false (no write before each Binding)",
                         "gpuplace-decisive-no-intent": "decisive mode and bind_intent: false"}
            for name, server in extra.items():
                runs[name] = (f"kube-scheduler + gpuplace, {described[name]}", server.scheduler_config())
            for round_, name in ((r, n) for r in range(args.repeat) for n in args.runs.split(",")):
                description, config = runs[name]
                server = extra.get(name, gp)
                results.append(await one_run(cp, f"{name}-{round_}", description, config, pods, console,
                                             gp=server if name.startswith("gpuplace") else None,
                                             cpu_gp=server, pprof=args.pprof))  # fmt: skip
        finally:
            await asyncio.to_thread(gp.close)
            for server in extra.values():
                await asyncio.to_thread(server.close)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--runs", default="alone,alone-100,gpuplace,gpuplace-sampled",
                    help="comma list of: alone, alone-100, gpuplace, gpuplace-sampled, gpuplace-decisive, "
                         "gpuplace-no-intent, gpuplace-decisive-no-intent")
    ap.add_argument("--repeat", type=int, default=1, help="cycle through the runs this many times")
    ap.add_argument("--http", action="store_true", help="extender over plain HTTP instead of HTTPS")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--pprof", type=Path, metavar="DIR",
                    help="save 15 s Go CPU profiles of kube-scheduler and kube-apiserver per run into DIR")
    args = ap.parse_args(argv)
    console = Console(width=max(Console().width, 140))
    if not binaries.present():
        console.print("building the local Kubernetes binaries (deploy/local/build.sh; minutes the first time)...")
        if binaries.build().returncode != 0:
            console.print("[red]deploy/local/build.sh failed[/red]")
            return 1
    started = time.monotonic()
    results = asyncio.run(main_async(args, console))
    console.print(table(results))
    console.print(cpu_table(results))
    medians = summary(results)
    console.print("medians: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    load = os.getloadavg()
    console.print(f"wall time {time.monotonic() - started:.0f}s; load average {load[0]:.1f} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"nodes": args.nodes, "pods": args.pods, "extender_https": not args.http,
                                    "cpus": os.cpu_count(), "load_average": load, "summary": medians,
                                    "runs": [asdict(r) | {"cpu_ms_per_pod": round(r.cpu_ms_per_pod, 3)}
                                             for r in results]}, indent=2) + "\n")  # fmt: skip
    console.print(f"saved {args.out}")
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
