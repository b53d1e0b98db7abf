"""Bind with lost answers on the real kube-apiserver + kube-scheduler: faults injected between gpuplace
and kube-apiserver by a proxy in the test harness (tests/e2e/apiserver_proxy.py), never in gpuplace.

This module runs its own gpuplace (all its API traffic through the proxy; bind timeout 2 s; the API
server deadline + margin long enough that no hold expires during a test, so nothing here waits for
one) and its own kube-scheduler with that gpuplace as extender. Pods carry what the webhook would
add (GPU requests and the toleration); the webhook is not registered. Every test has its own 8-GPU
node selected by a label, and checks the API server's records with gpuplace/localcluster/audit.py
during the scenario, not only at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.waiting import WaitTimeoutError, wait_until
from gpuplace.localcluster.workload import create_pod, node_names, pending_reason, wait_bound
from scheduler.binder import ApiError
from scheduler.kubeapi import KubeBinder
from tests.e2e.apiserver_proxy import FaultProxy
from tests.e2e.helpers import NodeFactory, owner, record_of
from tests.e2e.preemption import extender
from tests.e2e.proxied import ProxiedGpuplace, fault_proxy, gpu_pod, no_double_booking

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("faulty_scheduler")]

SETTINGS: dict[str, Any] = {
    "scheduler": {
        "bind_timeout_seconds": 2,
        "apiserver_request_timeout_seconds": 60,
        "apiserver_deadline_margin_seconds": 120,
    }
}


@pytest.fixture(scope="module")
def proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    with fault_proxy(control_plane, "fault-proxy") as fp:
        yield fp


@pytest.fixture(scope="module")
def faulty_gpuplace(control_plane: ControlPlane, proxy: FaultProxy) -> Iterator[ProxiedGpuplace]:
    with ProxiedGpuplace(
        control_plane, proxy, settings=SETTINGS, name="gpuplace-faults", register_webhook=False
    ) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_scheduler(
    control_plane: ControlPlane, faulty_gpuplace: ProxiedGpuplace
) -> Iterator[ManagedProcess]:
    process = control_plane.start_scheduler(faulty_gpuplace.scheduler_config(), name="kube-scheduler-faults")
    yield process
    control_plane.stop_process(process.name)


def metric(gp: GpuplaceServer, name: str, labels: str = "") -> float:
    status, body = probe(f"{gp.extender_base}/metrics", ca_file=gp.cp.ca_file)
    assert status == 200
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.split("{")[0].split(" ")[0] == name and labels in line
    )


async def test_a_binding_lost_on_its_way_is_written_again_when_kube_scheduler_retries(
    faulty_gpuplace: ProxiedGpuplace,
    proxy: FaultProxy,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Item 1. The first Binding never reaches kube-apiserver, the connection drops, the read after it
    fails: the outcome is unknown. kube-scheduler retries the bind; gpuplace writes the Binding again
    (old code: answered the retry 'idempotent' without a Binding, and the pod stayed Pending)."""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    unknown_before = metric(faulty_gpuplace, "gpuplace_binds_total", 'result="unknown"')
    proxy.drop_binding("lost")
    await create_pod(k8s, namespace, gpu_pod("lost", 4, mine))

    async def bound() -> str | None:
        await no_double_booking(k8s, namespace)  # checked all along, not only at the end
        return (await node_names(k8s, namespace)).get("lost")

    assert await wait_until(bound, within=90, what="the pod to be bound") == node
    assert proxy.bindings("lost") == [-1, 201]  # dropped, then written again by the retry
    # kube-apiserver is told the deadline gpuplace waits for (what bounds how late a Binding commits)
    assert all("timeout=2000ms" in q for q in proxy.binding_queries("lost"))
    assert metric(faulty_gpuplace, "gpuplace_binds_total", 'result="unknown"') == unknown_before + 1
    assert (await record_of(k8s, namespace, "lost")).node == node
    await no_double_booking(k8s, namespace)


async def test_a_committed_binding_whose_answer_was_lost_ends_bound_and_its_gpus_stay_booked(
    faulty_gpuplace: ProxiedGpuplace,
    proxy: FaultProxy,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """The Binding commits, its answer is dropped and the read after it fails: the watch shows the
    outcome; the pod is bound once, with gpuplace's record, and a pod asking for the rest of the node's
    GPUs gets only the GPUs the first one does not hold."""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    proxy.lose_binding_answer("answerless")
    await create_pod(k8s, namespace, gpu_pod("answerless", 4, mine))
    assert (await wait_bound(k8s, namespace, ["answerless"], within=90))["answerless"] == node

    async def answered() -> list[int]:
        return proxy.bindings("answerless")

    statuses = await wait_until(answered, within=30, what="the proxy to log the Binding")
    assert statuses[0] == 201  # it committed; gpuplace never saw the answer
    await no_double_booking(k8s, namespace)
    await create_pod(k8s, namespace, gpu_pod("rest", 4, mine))
    assert (await wait_bound(k8s, namespace, ["rest"], within=90))["rest"] == node
    first, rest = await record_of(k8s, namespace, "answerless"), await record_of(k8s, namespace, "rest")
    assert not set(first.gpus) & set(rest.gpus), (first.gpus, rest.gpus)
    await no_double_booking(k8s, namespace)


async def test_a_binding_committed_after_gpuplace_gave_up_never_shares_its_gpus(
    faulty_gpuplace: ProxiedGpuplace,
    proxy: FaultProxy,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Item 2. late's Bindings wait in the proxy while gpuplace's client times out; the read right
    after shows late unbound. rival asks for the same 8 GPUs meanwhile and must not get them: the proxy
    then hands kube-apiserver the held Bindings, one commits, and late is bound on exactly those GPUs.
    (Old code: rolled back on that read and bound rival there; the late Binding then put both pods on
    the same GPUs.)"""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    answered = metric(faulty_gpuplace, "gpuplace_binds_total")
    proxy.hold_bindings("late")
    await create_pod(k8s, namespace, gpu_pod("late", 8, mine))

    async def late_answered() -> bool:
        return proxy.held_count >= 1 and metric(faulty_gpuplace, "gpuplace_binds_total") > answered

    await wait_until(late_answered, within=60, what="gpuplace to answer late's first bind")
    await create_pod(k8s, namespace, gpu_pod("rival", 8, mine))

    async def rival_decided() -> str:
        await no_double_booking(k8s, namespace)  # the invariant holds all along
        if (await node_names(k8s, namespace)).get("rival"):
            return "bound"
        pending = await pending_reason(k8s, namespace, "rival")
        return "rejected" if pending is not None and "needs 8 free GPUs; 0 free here" in pending.text else ""

    assert (
        await wait_until(rival_decided, within=60, what="rival to be bound or refused by gpuplace")
        == "rejected"
    )
    statuses = proxy.release()  # kube-apiserver gets late's Bindings long after gpuplace gave up on them
    assert set(statuses) <= {201, 409}, statuses  # the first commits, unless a retry just beat it
    assert (await wait_bound(k8s, namespace, ["late"], within=90))["late"] == node

    async def committed_once() -> bool:
        return proxy.bindings("late").count(201) == 1

    await wait_until(committed_once, within=30, what="exactly one of late's Bindings to commit")
    assert sorted((await record_of(k8s, namespace, "late")).gpus) == list(range(8))
    assert not (await node_names(k8s, namespace)).get("rival")
    await no_double_booking(k8s, namespace)

    async def settled() -> bool:
        return metric(faulty_gpuplace, "gpuplace_reservations") == 0

    await wait_until(settled, within=60, what="the watch to confirm late's reservation")


async def test_a_binding_in_flight_when_gpuplace_is_killed_keeps_its_gpus_in_the_next_process(
    faulty_gpuplace: ProxiedGpuplace,
    proxy: FaultProxy,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """Issue 12 (HA) / 9.2: orphan's Binding waits in the proxy (kube-apiserver still working on it)
    when gpuplace is SIGKILLed; the next process, started from the same config, must not give orphan's
    8 GPUs to rival before that Binding commits. orphan names a scheduler nobody runs, so only the
    dead process ever bound it (no retry re-books it). (Old code: the new process listed orphan unbound
    and bound rival on those GPUs; the late commit then put both pods on them.)"""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    body = gpu_pod("orphan", 8, mine)
    body["spec"]["schedulerName"] = "nobody"
    orphan = await create_pod(k8s, namespace, body)
    with pytest.raises(ApiError) as refused:  # the intent's UID precondition, on the real kube-apiserver
        await KubeBinder(k8s).annotate_pod(namespace, "orphan", uid="not-its-uid", annotations={"a": "b"})
    assert refused.value.status == 422, refused.value
    proxy.hold_bindings("orphan")
    args = {"PodName": "orphan", "PodNamespace": namespace, "PodUID": orphan.metadata.uid, "Node": node}
    answer = await asyncio.to_thread(extender, faulty_gpuplace, "bind", args)
    assert "is unknown" in answer["Error"] and proxy.held_count == 1, answer
    assert faulty_gpuplace.process is not None
    os.kill(faulty_gpuplace.process.pid, signal.SIGKILL)
    await asyncio.to_thread(faulty_gpuplace.process.popen.wait, 60)
    faulty_gpuplace.stop()
    await asyncio.to_thread(faulty_gpuplace.launch)  # same config and ports; returns once /readyz is 200
    await create_pod(k8s, namespace, gpu_pod("rival", 8, mine))

    async def rival_decided() -> str:
        await no_double_booking(k8s, namespace)
        if (await node_names(k8s, namespace)).get("rival"):
            return "bound"
        pending = await pending_reason(k8s, namespace, "rival")
        return "rejected" if pending is not None and "needs 8 free GPUs; 0 free here" in pending.text else ""

    decided = await wait_until(rival_decided, within=90, what="rival to be bound or refused by gpuplace")
    assert decided == "rejected", f"rival got orphan's GPUs\n{faulty_gpuplace.log_file.read_text()[-3000:]}"
    assert proxy.release() == [201]  # the dead process's Binding commits after all
    assert (await wait_bound(k8s, namespace, ["orphan"], within=60))["orphan"] == node
    assert sorted((await record_of(k8s, namespace, "orphan")).gpus) == list(range(8))
    assert not (await node_names(k8s, namespace)).get("rival")
    await no_double_booking(k8s, namespace)
    core = client.CoreV1Api(k8s)
    await core.delete_namespaced_pod("orphan", namespace, grace_period_seconds=0)

    seen: list[dict[str, float]] = []

    async def rival_bound_or_freed() -> str:  # nothing stays held once orphan is gone
        if (await node_names(k8s, namespace)).get("rival"):
            return "bound"
        seen.append((await asyncio.to_thread(faulty_gpuplace.node_gpus)).get(node, {}))
        return "freed" if seen[-1].get("allocated") == 0 else ""

    try:
        state = await wait_until(rival_bound_or_freed, within=60, what="gpuplace to free orphan's GPUs")
    except WaitTimeoutError as e:
        raise AssertionError(f"{e}; gpuplace's view of {node}: {seen[-1:]}") from e
    if state == "freed":  # kube-scheduler retried rival on orphan's deletion before gpuplace's watch saw
        # it: an update of rival itself requeues it
        await core.patch_namespaced_pod(
            "rival", namespace, {"metadata": {"annotations": {"test/nudge": "1"}}}
        )
    assert (await wait_bound(k8s, namespace, ["rival"], within=90))["rival"] == node
    await no_double_booking(k8s, namespace)
