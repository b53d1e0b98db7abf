"""What the extender registration for DRA pods costs the pods that are not GPU pods.

kube-scheduler calls an extender only for pods naming one of its managedResources, or for every pod when the
list is empty (pkg/scheduler/extender.go, `IsInterested`). Pods whose GPUs come from ResourceClaims name no
resource, so gpuplace needs one of:
- `marker`: deploy/scheduler's list (nvidia.com/gpu, the MIG resources) plus `gpuplace.io/dra-gpu`
  (ignoredByScheduler: true), which gpuplace's webhook puts on claim pods only — what gpuplace ships;
- `empty`: managedResources [] — every pod of the cluster calls filter, prioritize and bind on gpuplace,
  and gpuplace binds them all.
This measures both against kube-scheduler alone on CPU-only pods (the majority of a real cluster): pods/s,
extender calls per pod, and the CPU time gpuplace, kube-scheduler, kube-apiserver and etcd spend per pod
(bench/scheduler_throughput.py's method and runner: pods created first, then kube-scheduler started).

    .venv/bin/python bench/dra_registration.py [--nodes 100] [--pods 300]

Static world (no kube-controller-manager or kwok), so the numbers are the scheduling path alone; everything
shares this machine's cores, so compare runs of one invocation, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import scheduler_throughput as st  # noqa: E402
from gpuplace.localcluster import ControlPlane  # noqa: E402
from gpuplace.localcluster.fake_nodes import create_node, node_manifest  # noqa: E402
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer  # noqa: E402
from gpuplace.localcluster.workload import pod_manifest  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dra_registration.json"


def with_managed(config: dict[str, Any], managed: list[dict[str, Any]]) -> dict[str, Any]:
    entry = {**config["extenders"][0], "managedResources": managed}
    return {**config, "extenders": [entry]}


async def main_async(args: argparse.Namespace, console: Console) -> list[tuple[st.RunResult, float]]:
    pods = [pod_manifest(f"cpu-{i:05d}", cpu="1", memory="1Gi") for i in range(args.pods)]
    out: list[tuple[st.RunResult, float]] = []
    with ControlPlane(lifecycle=False) as cp:
        async with cp.api_client() as api:
            half = args.nodes // 2
            nodes = [node_manifest(f"cpu-{i:04d}", "cpu") for i in range(half)]
            nodes += [
                node_manifest(f"h100-{i:04d}", "hgx-h100", topology=True) for i in range(args.nodes - half)
            ]
            await st.bounded([create_node(api, n) for n in nodes])
        with GpuplaceServer(cp) as gp:
            marker = gp.scheduler_config()
            runs = [
                ("alone", "kube-scheduler alone", {"percentageOfNodesToScore": 100}, None),
                ("marker", "gpuplace: GPU resources + marker (shipped)", marker, gp),
                ("empty", "gpuplace: managedResources []", with_managed(marker, []), gp),
            ]
            for name, description, config, server in runs:
                before = st.extender_latency(server)
                result = await st.one_run(cp, f"{name}-1", description, config, pods, console, gp=server)
                after = st.extender_latency(server)
                filters = after.get("filter", (0.0, 0.0))[0] - before.get("filter", (0.0, 0.0))[0]
                out.append((result, filters / max(result.bound, 1)))
    return out


def table(results: list[tuple[st.RunResult, float]]) -> Table:
    t = Table(
        title="CPU-only pods under each extender registration (same nodes, same pods, one control plane)"
    )
    for col in ("registration", "pods bound", "pods/s", "filter calls/pod", "gpuplace ms filter/prio/bind",
                "gpuplace CPU s", "CPU ms/pod (all)"):  # fmt: skip
        t.add_column(col, justify="left" if col == "registration" else "right")
    for r, calls in results:
        ext = (
            "/".join(f"{r.extender_ms.get(v, 0):.1f}" for v in ("filter", "prioritize", "bind"))
            if r.extender_ms
            else "-"
        )
        t.add_row(r.description, f"{r.bound}/{r.pods}", f"{r.pods_per_second:.1f}", f"{calls:.2f}", ext,
                  f"{r.cpu_seconds.get('gpuplace', 0.0):.1f}", f"{r.cpu_ms_per_pod:.2f}")  # fmt: skip
    return t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--pods", type=int, default=300)
    args = parser.parse_args()
    console = Console()
    results = asyncio.run(main_async(args, console))
    console.print(table(results))
    RESULTS.write_text(
        json.dumps([{**asdict(r), "filter_calls_per_pod": c} for r, c in results], indent=2) + "\n"
    )
    console.print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
