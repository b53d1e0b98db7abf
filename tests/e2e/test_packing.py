"""Packing against kube-scheduler alone, and a gpuplace restart in the middle of a sequence.

Packing: one scripted sequence of mixed GPU pods runs twice on identical fresh node sets — first
with upstream kube-scheduler alone (default profile, no extender), then with gpuplace registered
as its extender. Each pod is created after the previous one is bound, so both runs see the same
order. Afterwards no GPU may be double-booked, and gpuplace must leave fewer nodes partially used.

Restart: pods are being scheduled when gpuplace is stopped; it comes back as a new process, rebuilds
its picture from the API server (pods it bound carry ``gpuplace.io/gpus``), the interrupted pods are
placed, and a final batch fills every remaining GPU exactly — any GPU the new process forgot would
be handed out twice, which the audit of all records catches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess, audit
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.workload import create_pod, node_names, pod_manifest, wait_bound, wait_pending
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner

pytestmark = pytest.mark.e2e

# (GPUs, cpu) per pod; 34 GPUs in 16 pods on 6 nodes of 8 GPUs. NVLink left at the default (preferred).
SEQUENCE: list[tuple[int, str]] = [
    (1, "4"), (2, "8"), (4, "16"), (1, "4"), (8, "32"), (2, "8"), (1, "4"), (4, "16"),
    (2, "8"), (1, "4"), (1, "4"), (2, "8"), (1, "4"), (2, "8"), (1, "4"), (1, "4"),
]  # fmt: skip
PACKING_NODES = 6


async def _run_sequence(k8s: client.ApiClient, namespace: str, node_factory: NodeFactory) -> dict[str, tuple[int, int]]:
    mine = owner(namespace)
    nodes = [await node_factory("hgx-h100", labels=mine, topology=True) for _ in range(PACKING_NODES)]
    for i, (gpus, cpu) in enumerate(SEQUENCE):
        name = f"job-{i:02d}"
        await create_pod(k8s, namespace, pod_manifest(name, gpus=gpus, cpu=cpu, memory="64Gi", node_selector=mine))
        await wait_bound(k8s, namespace, [name], within=60)
    pods = await audit.list_raw(k8s, "pods", namespace=namespace)
    all_nodes = [n for n in await audit.list_raw(k8s, "nodes") if n["metadata"]["name"] in nodes]
    return audit.usage(pods, all_nodes)


def _describe(use: dict[str, tuple[int, int]]) -> str:
    return " ".join(f"{u}/{t}" for u, t in sorted(use.values(), reverse=True))


async def test_packing_beats_kube_scheduler_alone(
    control_plane: ControlPlane,
    gpuplace: GpuplaceServer,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    e2e_report: Callable[[str], None],
) -> None:
    core = client.CoreV1Api(k8s)
    baseline_ns = f"{namespace}-alone"
    await core.create_namespace({"metadata": {"name": baseline_ns}})  # type: ignore[arg-type]
    try:
        alone = await asyncio.to_thread(control_plane.start_scheduler, name="kube-scheduler-alone")
        try:
            baseline = await _run_sequence(k8s, baseline_ns, node_factory)
        finally:
            await asyncio.to_thread(control_plane.stop_process, alone.name)
        assert (await audit_namespaces(k8s, baseline_ns, require_records=False)).ok

        with_extender = await asyncio.to_thread(
            control_plane.start_scheduler, gpuplace.scheduler_config(), name="kube-scheduler-packing"
        )
        try:
            packed = await _run_sequence(k8s, namespace, node_factory)
        finally:
            await asyncio.to_thread(control_plane.stop_process, with_extender.name)
    finally:
        await core.delete_collection_namespaced_pod(baseline_ns, grace_period_seconds=0)
        await core.delete_namespace(baseline_ns)

    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    assert result.with_record == len(SEQUENCE)
    total = sum(g for g, _ in SEQUENCE)
    assert sum(u for u, _ in packed.values()) == sum(u for u, _ in baseline.values()) == total
    partial_alone, partial_packed = audit.partially_used(baseline), audit.partially_used(packed)
    used_alone = sum(1 for u, _ in baseline.values() if u)
    used_packed = sum(1 for u, _ in packed.values() if u)
    e2e_report(
        f"packing ({len(SEQUENCE)} pods, {total} GPUs, {PACKING_NODES} x 8-GPU nodes): partially used nodes "
        f"kube-scheduler alone {len(partial_alone)} (nodes used {used_alone}; {_describe(baseline)}), "
        f"with gpuplace {len(partial_packed)} (nodes used {used_packed}; {_describe(packed)})"
    )
    assert len(partial_packed) < len(partial_alone)


RESTART_NODES = 3  # 24 GPUs


async def test_restart_mid_sequence_rebuilds_state_without_double_booking(
    gpuplace: GpuplaceServer,
    gpuplace_scheduler: ManagedProcess,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    e2e_report: Callable[[str], None],
) -> None:
    mine = owner(namespace)
    for _ in range(RESTART_NODES):
        await node_factory("hgx-h100", labels=mine, topology=True)
    mig_node = await node_factory("a100-80gb-mig", labels=mine, topology=True)
    capacity = RESTART_NODES * 8 + 4  # + the MIG node's 4 whole GPUs

    def pod(name: str, gpus: int, mig: str | None = None) -> dict[str, Any]:
        return pod_manifest(name, gpus=gpus, mig=mig, cpu="2", memory="8Gi", node_selector=mine)

    # Phase 1: bound by the first gpuplace process.
    first = [("a0", 2), ("a1", 1), ("a2", 4), ("a3", 1), ("a4", 3), ("a5", 2)]
    for name, gpus in first:
        await create_pod(k8s, namespace, pod(name, gpus))
    await create_pod(k8s, namespace, pod("m0", 1, "3g.40gb"))
    await create_pod(k8s, namespace, pod("m1", 3, "1g.10gb"))
    await wait_bound(k8s, namespace, [n for n, _ in first] + ["m0", "m1"])

    # Phase 2: a batch waits behind a scheduling gate; gpuplace stops; the gates are lifted, so
    # kube-scheduler tries these pods while gpuplace is down (extender not ignorable: none may be placed).
    second = [("b0", 1), ("b1", 2), ("b2", 1), ("b3", 4), ("b4", 1), ("b5", 2)]
    second_names = [n for n, _ in second] + ["m2"]
    for name, gpus in second:
        await create_pod(k8s, namespace, gated(pod(name, gpus)))
    await create_pod(k8s, namespace, gated(pod("m2", 1, "3g.40gb")))
    old_pid = gpuplace.process.pid if gpuplace.process else None
    await asyncio.to_thread(gpuplace.stop)
    core = client.CoreV1Api(k8s)
    for name in second_names:
        await core.patch_namespaced_pod(name, namespace, {"spec": {"schedulingGates": None}})
    await wait_pending(k8s, namespace, "b3", contains=f"{gpuplace.extender_url}/filter", within=30)
    placed = await node_names(k8s, namespace)
    assert not any(placed[n] for n in second_names)
    await asyncio.to_thread(gpuplace.launch)
    assert gpuplace.process is not None and gpuplace.process.pid != old_pid
    await wait_bound(k8s, namespace, second_names, within=90)

    # Phase 3: fill every remaining whole GPU and the rest of the 1g.10gb devices exactly.
    used = sum(g for _, g in first + second)
    remaining = capacity - used
    third = [(f"c{i}", 1) for i in range(remaining)]
    for name, gpus in third:
        await create_pod(k8s, namespace, pod(name, gpus))
    await create_pod(k8s, namespace, pod("m3", 14 - 3, "1g.10gb"))
    await wait_bound(k8s, namespace, [n for n, _ in third] + ["m3"], within=60)

    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
    assert result.with_record == result.gpu_pods == len(first) + len(second) + len(third) + 4
    nodes = list(await audit.list_raw(k8s, "nodes", label_selector=f"e2e.gpuplace.io/owner={namespace}"))
    use = audit.usage(await audit.list_raw(k8s, "pods", namespace=namespace), nodes)
    assert all(u == t for n, (u, t) in use.items() if n != mig_node), use
    e2e_report(f"restart: {len(second_names)} pods tried while gpuplace was down, none placed; after the "
               f"restart all {result.gpu_pods} GPU pods placed, {capacity} whole GPUs full, no GPU double-booked")


def gated(body: dict[str, Any]) -> dict[str, Any]:
    body["spec"]["schedulingGates"] = [{"name": "e2e.gpuplace.io/hold"}]
    return body
