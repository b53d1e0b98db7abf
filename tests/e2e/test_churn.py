"""Churn on the real scheduler: ~500 GPU pods of every kind arriving over time on 50 kwok nodes.

Whole GPUs, multi-GPU pods (some needing one NVLink island), MIG devices and fractional shares (on the
time-sliced L4 nodes), each
running a random time (kwok ends it Succeeded), plus a few pods no node here can ever take. gpuplace is
restarted once half-way (its cache is rebuilt from the API server while pods keep arriving and
finishing). An AuditLoop checks every second that no GPU, MIG device or share is given twice. In the end
every pod has either run (bound by gpuplace, Succeeded) or is Pending with gpuplace's reason; and
gpuplace's model shows every GPU free again.

Own module: the restart must not disturb other modules' gpuplace.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster.audit import KEYS, AuditLoop, list_raw
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.lifecycle import run_for
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import create_pod, pending_reason, pod_manifest
from tests.e2e.helpers import NodeFactory, owner

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]

NODES = {"hgx-h100": 8, "dgx1-v100": 6, "a100-80gb-mig": 6, "a40-pairs": 10, "l4": 20}
SLICED = {"l4": 4}  # time-sliced, 4 replicas per GPU: where gpuplace places the fractional shares
PODS = 500
ARRIVAL_SECONDS = 30.0
IMPOSSIBLE = "needs GPUs with ≥ 100000 MiB"  # gpuplace's filter reason for the pods no GPU here fits


def _workload(rng: random.Random, selector: dict[str, str]) -> list[tuple[float, dict[str, Any]]]:
    """(arrival offset in seconds, pod manifest) for PODS pods, plus 4 that can never be placed."""
    out = []
    for i in range(PODS):
        kind = rng.choices(["whole", "multi", "mig", "share"], weights=[40, 20, 15, 25])[0]
        notes = run_for(rng.uniform(2.0, 12.0))
        if kind == "whole":
            body = pod_manifest(f"whole-{i}", gpus=1, cpu="2", memory="8Gi", annotations=notes)
        elif kind == "multi":
            count = rng.choice([2, 2, 4, 4, 8])
            if count > 2 and rng.random() < 0.5:
                notes["gpuplace.io/nvlink"] = "required"
            body = pod_manifest(f"multi{count}-{i}", gpus=count, cpu="8", memory="32Gi", annotations=notes)
        elif kind == "mig":
            profile = rng.choice(["1g.10gb", "1g.10gb", "3g.40gb"])
            body = pod_manifest(f"mig-{profile.replace('.', '-')}-{i}", gpus=1, mig=profile, cpu="2",
                                memory="8Gi", annotations=notes)  # fmt: skip
        else:
            notes["gpuplace.io/gpu-milli"] = str(rng.choice([250, 500]))
            body = pod_manifest(f"share-{i}", gpus=1, cpu="1", memory="4Gi", annotations=notes)
        out.append((rng.uniform(0, ARRIVAL_SECONDS), body))
    for i in range(4):
        body = pod_manifest(f"impossible-{i}", gpus=1, annotations={"gpuplace.io/gpu-memory-mib": "100000"})
        out.append((rng.uniform(0, ARRIVAL_SECONDS), body))
    for _, body in out:
        body["spec"]["nodeSelector"] = dict(selector)
        body["spec"]["restartPolicy"] = "Never"
    return sorted(out, key=lambda item: item[0])


async def _submit(k8s: client.ApiClient, namespace: str, items: list[tuple[float, dict[str, Any]]],
                  gpuplace: GpuplaceServer) -> None:  # fmt: skip
    """Create each pod at its arrival time (concurrently, as many clients would); restart gpuplace when
    half of them are in."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    restarted = None
    creating = []
    for n, (offset, body) in enumerate(items):
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        if restarted is None and n >= len(items) // 2:
            restarted = asyncio.create_task(asyncio.to_thread(gpuplace.restart))
        # While gpuplace restarts its webhook is down and GPU pod creation fails: retry, as a client would.
        creating.append(asyncio.create_task(create_pod(k8s, namespace, body, retry_for=120)))
    await asyncio.gather(*creating)
    assert restarted is not None
    await restarted


async def _settled(k8s: client.ApiClient, namespace: str, total: int) -> list[dict[str, Any]] | None:
    """All pods are there and each has either finished or is unbound (no pod is still running or placing)."""
    pods = await list_raw(k8s, "pods", namespace=namespace)
    if len(pods) != total:
        return None
    for p in pods:
        phase = (p.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed") and (p.get("spec") or {}).get("nodeName"):
            return None
        if phase == "Pending" and not p["metadata"]["name"].startswith("impossible-"):
            return None
    return pods


def _scheduling_wait(pod: dict[str, Any]) -> float:
    """Seconds from creation to PodScheduled=True (second resolution, as the API server stores them)."""
    created = dt.datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    return (dt.datetime.fromisoformat(cond["lastTransitionTime"]) - created).total_seconds()


async def test_churn_with_a_gpuplace_restart_never_double_books(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory,
    e2e_report: Any,
) -> None:  # fmt: skip
    mine = owner(namespace)
    names = await asyncio.gather(
        *(node_factory(preset, labels=mine, topology=True, time_slicing_replicas=SLICED.get(preset, 1))
          for preset, n in NODES.items() for _ in range(n))
    )  # fmt: skip
    items = _workload(random.Random(10), mine)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with AuditLoop(k8s, namespaces=[namespace]) as audit_loop:
        await _submit(k8s, namespace, items, gpuplace)
        pods = await wait_until(
            lambda: _settled(k8s, namespace, len(items)), within=400, interval=1.0,
            what="every pod finished, or Pending with a reason",
        )  # fmt: skip
    elapsed = loop.time() - started
    phases = Counter(p["status"]["phase"] for p in pods)
    assert phases == {"Succeeded": PODS, "Pending": 4}, phases
    unbound_with_record = [p["metadata"]["name"] for p in pods if KEYS.gpus in (p["metadata"].get("annotations") or {})
                           and p["status"]["phase"] == "Pending"]  # fmt: skip
    assert unbound_with_record == []
    ran = [p for p in pods if p["status"]["phase"] == "Succeeded"]
    assert all(KEYS.gpus in (p["metadata"].get("annotations") or {}) for p in ran), "a pod ran without gpuplace"
    for i in range(4):
        reason = await pending_reason(k8s, namespace, f"impossible-{i}")
        assert reason is not None and IMPOSSIBLE in reason.text, reason
    assert audit_loop.problems == []
    assert audit_loop.rounds >= ARRIVAL_SECONDS / 2
    waits = sorted(_scheduling_wait(p) for p in ran)
    view = await asyncio.to_thread(gpuplace.node_gpus)
    assert {n: view[n] for n in names if view.get(n, {}).get("allocated")} == {}
    e2e_report(
        f"churn: {PODS} GPU pods on {len(names)} kwok nodes, gpuplace restarted once: all ran, "
        f"{audit_loop.rounds} audits found no double booking (peak {audit_loop.max_gpu_pods} GPU pods live; "
        f"{sum(w >= 5 for w in waits)} pods waited ≥ 5 s for GPUs, longest {waits[-1]:.0f} s), {elapsed:.0f}s"
    )
