"""`gpuplace demo`: a real cluster on this machine, gpuplace placing a sample workload, the placement table.

Default (live): builds upstream kube-apiserver / kube-scheduler / kube-controller-manager v1.36.3, etcd
and kwok from the Go module proxy if needed (deploy/local/build.sh; minutes the first time, instant
afterwards), starts them on loopback with 16 fake GPU nodes that kwok runs pods on (HGX H100, DGX-1 V100, A100 with MIG, L4, CPU-only), starts
`gpuplace serve` (extender + webhook, its own ServiceAccount) and kube-scheduler with gpuplace as its
extender, submits the sample workload (gpuplace.localcluster.showcase), prints where every pod went
— phase (Running; the Job's pods Succeeded), node, GPUs chosen, whether they form one NVLink island,
and why the pending ones wait — and keeps
the cluster up for `kubectl` until Ctrl-C (`--once`: exit after the table).

`--offline` runs placement_core alone, in-process: the same evaluate → score → choose path the
extender's filter/prioritize/bind take, without Kubernetes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from rich.console import Console
from rich.table import Table

from placement_core import (
    MODELS,
    ClusterState,
    GpuRequest,
    GpuSpec,
    MigInstance,
    NodeSpec,
    NvlinkNeed,
    Policy,
    explain,
    placer,
)
from placement_core.scoring import RULES
from placement_core.topology import islands


def example_cluster() -> ClusterState:
    """HGX H100 ×8 (NVSwitch), DGX-1 V100 (hybrid cube-mesh), A100 with MIG, L4 single-GPU, CPU-only."""
    st = ClusterState(max_gpus=8)
    cpu, mem = 192_000, 2_000_000
    for i in range(2):
        st.upsert_node(NodeSpec.uniform(f"hgx-h100-{i}", MODELS["H100-80GB"], 8, zone="a", rack=f"r{i}",
                                        cpu_milli=cpu, memory_mib=mem))
    st.upsert_node(NodeSpec.uniform("dgx1-v100-0", MODELS["V100-32GB"], 8, zone="a", rack="r2",
                                    cpu_milli=cpu, memory_mib=mem))
    a100 = MODELS["A100-80GB"]
    p3, p1 = a100.mig_profile("3g.40gb"), a100.mig_profile("1g.10gb")
    assert p3 is not None and p1 is not None
    gpus = [GpuSpec(0, a100.memory_mib, mig=(MigInstance(p3, 0), MigInstance(p3, 4)))]
    gpus.append(GpuSpec(1, a100.memory_mib, mig=tuple(MigInstance(p1, s) for s in range(7))))
    gpus += [GpuSpec(i, a100.memory_mib) for i in range(2, 8)]
    st.upsert_node(NodeSpec("a100-mig-0", a100, gpus, zone="b", rack="r3", cpu_milli=cpu, memory_mib=mem))
    for i in range(2):
        st.upsert_node(NodeSpec.uniform(f"l4-{i}", MODELS["L4"], 1, zone="b", cpu_milli=16_000, memory_mib=64_000))
    st.upsert_node(NodeSpec("cpu-0", None, cpu_milli=64_000, memory_mib=256_000))
    return st


WORKLOAD: list[tuple[str, GpuRequest]] = [
    ("train-8gpu", GpuRequest(count=8, nvlink=NvlinkNeed.REQUIRED, cpu_milli=32_000, memory_mib=256_000)),
    ("train-4gpu-a", GpuRequest(count=4, nvlink=NvlinkNeed.REQUIRED, cpu_milli=16_000, memory_mib=64_000)),
    ("train-4gpu-b", GpuRequest(count=4, nvlink=NvlinkNeed.REQUIRED, cpu_milli=16_000, memory_mib=64_000)),
    ("finetune-2gpu", GpuRequest(count=2, nvlink=NvlinkNeed.PREFERRED, cpu_milli=8_000, memory_mib=32_000)),
    ("infer-l4", GpuRequest(count=1, models=frozenset({"L4"}), cpu_milli=2_000, memory_mib=8_000)),
    ("notebook-0.5", GpuRequest(count=1, milli=500, cpu_milli=1_000, memory_mib=4_000)),
    ("notebook-0.3", GpuRequest(count=1, milli=300, cpu_milli=1_000, memory_mib=4_000)),
    ("mig-3g", GpuRequest(count=1, mig_profile="3g.40gb", cpu_milli=4_000, memory_mib=16_000)),
    ("mig-1g-x2", GpuRequest(count=2, mig_profile="1g.10gb", cpu_milli=2_000, memory_mib=8_000)),
    ("big-mem-h100", GpuRequest(count=2, min_memory_mib=70_000, models=frozenset({"H100-80GB"}))),
    ("train-8gpu-2", GpuRequest(count=8, nvlink=NvlinkNeed.REQUIRED, cpu_milli=32_000, memory_mib=256_000)),
]


def run_offline(policy: Policy) -> Table:
    st = example_cluster()
    table = Table(title=f"gpuplace offline demo — policy {policy.name.lower()}")
    for col in ("pod", "asks for", "node", "GPUs", "NVLink island", "why not elsewhere / pending reason"):
        table.add_column(col)
    for uid, req in WORKLOAD:
        reason, detail = placer.evaluate(st, req)
        scores = placer.score(st, req, reason, policy)
        order = sorted(range(st.n_rows), key=lambda i: -scores[i])
        best = order[0] if order and reason[order[0]] == 0 else None
        why = _reasons(st, req, reason, detail)
        if best is None:
            table.add_row(uid, req.describe(), "[red]Pending[/red]", "", "", why)
            continue
        placement = placer.choose(st, st.names[best], req)
        assert placement is not None
        st.allocate(uid, placement)
        if placement.mig:
            gpus = ", ".join(f"{g}/mig{k}" for g, k in placement.mig)
            island = "MIG"
        else:
            gpus = ",".join(map(str, placement.gpus)) + (f" ({placement.milli}m)" if placement.milli < 1000 else "")
            row = st.index[placement.node]
            chosen = [g in placement.gpus for g in range(st.G)]
            comps = islands(st.links[row], __import__("numpy").array(chosen))
            island = "yes" if len(placement.gpus) > 1 and len(comps) == 1 else ("-" if len(comps) <= 1 else "no")
        table.add_row(uid, req.describe(), placement.node, gpus, island, why)
    assert st.check_invariants() == []
    return table


def _reasons(st: ClusterState, req: GpuRequest, reason, detail) -> str:  # type: ignore[no-untyped-def]
    seen: dict[str, list[str]] = {}
    for i, name in enumerate(st.names):
        if reason[i]:
            text = explain(int(reason[i]), int(detail[i]), what=req.describe(), count=req.count, milli=req.milli,
                           min_memory_mib=req.min_memory_mib, mig_profile=req.mig_profile,
                           models=",".join(sorted(req.models or ())))
            seen.setdefault(text, []).append(name)
    return "; ".join(f"{len(v)} node(s): {k}" for k, v in seen.items())


def build_binaries(console: Console) -> bool:
    """deploy/local/build.sh with its progress on the terminal; False (and a message) when it fails."""
    from gpuplace.localcluster import binaries

    if os.environ.get(binaries.ENV_BIN_DIR):
        return binaries.present()  # the user's own binaries: nothing to build
    if binaries.present():
        console.print("[dim]checking the local Kubernetes binaries (deploy/local/bin)...[/dim]")
    else:
        console.print(
            "[bold]Building kube-apiserver, kube-scheduler, kube-controller-manager, kubectl v1.36.3, etcd and kwok "
            "from the Go module proxy into deploy/local/bin[/bold] — the first build takes about 10 minutes on "
            "2 cores; later runs start at once."
        )
    result = subprocess.run(["bash", str(binaries.build_script())], stdout=sys.stderr, check=False)
    if result.returncode != 0:
        console.print(f"[red]deploy/local/build.sh failed (status {result.returncode}); see its output above.[/red]")
        return False
    return True


def run_live(*, once: bool, policy: str | None, console: Console) -> int:
    from gpuplace.localcluster import ControlPlane
    from gpuplace.localcluster.fake_nodes import create_demo_cluster
    from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
    from gpuplace.localcluster.showcase import (
        NAMESPACE,
        node_table,
        placement_table,
        sample_workload,
        snapshot,
        submit,
    )

    if not build_binaries(console):
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    settings = {"scheduler": {"policy": policy}} if policy else {}
    console.print("starting etcd and kube-apiserver...")
    with ControlPlane() as cp:
        console.print(f"control plane up: {cp.server} (logs: {cp.workdir / 'logs'})")

        async def nodes() -> list[str]:
            async with cp.api_client() as api:
                return await create_demo_cluster(api)

        names = asyncio.run(nodes())
        console.print(f"created {len(names)} fake nodes (GFD labels, gpuplace.io/gpu-topology annotations)")
        with GpuplaceServer(cp, settings=settings) as gp:
            console.print(f"gpuplace serving: extender {gp.extender_url}, webhook {gp.webhook_base}/mutate "
                          f"(as {gp.credentials.username if gp.credentials else '?'})")
            cp.start_scheduler(gp.scheduler_config(), name="kube-scheduler")
            console.print("kube-scheduler up with gpuplace as extender (filter, prioritize, bind, preempt)")
            items = sample_workload()

            async def work() -> Table:
                async with cp.api_client() as api:
                    await submit(api, items)
                    snap = await snapshot(api, items)
                    console.print(node_table(snap))
                    return placement_table(snap, f"gpuplace placements in namespace {NAMESPACE!r}")

            console.print(f"submitting {sum(i.pod_count for i in items)} pods (a Deployment and a Job among them)...")
            console.print(asyncio.run(work()))
            console.print(f"[dim]ready in {time.monotonic() - started:.0f}s[/dim]")
            if once:
                return 0
            console.print(f"\nexport KUBECONFIG={cp.admin_kubeconfig}\n"
                          f"{cp.binaries.kubectl} get pods -n {NAMESPACE} -o wide\n"
                          "Ctrl-C stops the cluster and removes its files.")
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            console.print("stopping...")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpuplace demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offline", action="store_true", help="placement_core only, no Kubernetes")
    ap.add_argument("--once", action="store_true", help="exit after printing the table (live demo)")
    ap.add_argument("--policy", default=None,
                    help="scoring policy: most-allocated (default), least-allocated, best-fit")
    args = ap.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    if args.offline:
        policy = (args.policy or "most-allocated").replace("-", "_").upper()
        if policy not in {p.name for p in RULES}:
            ap.error(f"--policy: choose from {', '.join(p.name.lower().replace('_', '-') for p in RULES)}")
        console.print(run_offline(Policy[policy]))
        return 0
    return run_live(once=args.once, policy=args.policy, console=console)
