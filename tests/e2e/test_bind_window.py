"""`bind_intent: false` on the real kube-apiserver + kube-scheduler: no intent is written, and a process
that starts while a dead predecessor's Binding may still commit waits it out (scheduler/inflight.py).

Its own gpuplace (API traffic through the fault proxy of tests/e2e/apiserver_proxy.py, bind timeout
2 s, a 20 s margin: the window is 22 s from the new process's take-over) and its own kube-scheduler.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.waiting import WaitTimeoutError, wait_until
from gpuplace.localcluster.workload import create_pod, node_names, pending_reason, wait_bound
from tests.e2e.apiserver_proxy import FaultProxy
from tests.e2e.helpers import NodeFactory, owner, record_of
from tests.e2e.preemption import extender
from tests.e2e.proxied import ProxiedGpuplace, fault_proxy, gpu_pod, no_double_booking

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("window_scheduler")]

SETTINGS = {
    "scheduler": {
        "bind_intent": False,
        "bind_timeout_seconds": 2,
        "apiserver_request_timeout_seconds": 60,
        "apiserver_deadline_margin_seconds": 20,
    }
}


@pytest.fixture(scope="module")
def proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    with fault_proxy(control_plane, "fault-proxy-window") as fp:
        yield fp


@pytest.fixture(scope="module")
def window_gpuplace(control_plane: ControlPlane, proxy: FaultProxy) -> Iterator[ProxiedGpuplace]:
    with ProxiedGpuplace(
        control_plane, proxy, settings=SETTINGS, name="gpuplace-window", register_webhook=False
    ) as server:
        yield server


@pytest.fixture(scope="module")
def window_scheduler(
    control_plane: ControlPlane, window_gpuplace: ProxiedGpuplace
) -> Iterator[ManagedProcess]:
    process = control_plane.start_scheduler(window_gpuplace.scheduler_config(), name="kube-scheduler-window")
    yield process
    control_plane.stop_process(process.name)


async def test_a_restart_waits_out_a_dead_processs_binding_instead_of_reading_an_intent(
    window_gpuplace: ProxiedGpuplace,
    proxy: FaultProxy,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
) -> None:
    """orphan's Binding waits in the proxy when gpuplace is SIGKILLed; no intent is on the pod. The
    next process answers no verb until the window is over; the Binding commits inside it; rival, created
    meanwhile (tried while no gpuplace answered, then retried after kube-scheduler's backoff), is
    refused on orphan's GPUs instead of sharing them."""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    body = gpu_pod("orphan", 8, mine)
    body["spec"]["schedulerName"] = "nobody"  # only the dead process ever binds it
    orphan = await create_pod(k8s, namespace, body)
    proxy.hold_bindings("orphan")
    args = {"PodName": "orphan", "PodNamespace": namespace, "PodUID": orphan.metadata.uid, "Node": node}
    answer = await asyncio.to_thread(extender, window_gpuplace, "bind", args)
    assert "is unknown" in answer["Error"] and proxy.held_count == 1, answer
    core = client.CoreV1Api(k8s)
    annotations = (await core.read_namespaced_pod("orphan", namespace)).metadata.annotations or {}
    assert "gpuplace.io/binding" not in annotations  # no intent written in this mode
    assert window_gpuplace.process is not None
    os.kill(window_gpuplace.process.pid, signal.SIGKILL)
    await asyncio.to_thread(window_gpuplace.process.popen.wait, 60)
    window_gpuplace.stop()
    relaunch = asyncio.create_task(asyncio.to_thread(window_gpuplace.launch))  # returns once /readyz is 200
    await create_pod(k8s, namespace, gpu_pod("rival", 8, mine))

    async def waiting_out() -> bool:
        assert not relaunch.done() or relaunch.exception() is None
        status, text = await asyncio.to_thread(
            probe, f"{window_gpuplace.extender_base}/readyz", ca_file=window_gpuplace.cp.ca_file
        )
        return status == 503 and "binds a previous process may have in flight" in text

    await wait_until(waiting_out, within=90, what="the new process to wait out the old Bindings")
    await no_double_booking(k8s, namespace)
    assert not (await node_names(k8s, namespace)).get("rival")
    assert proxy.release() == [201]  # the dead process's Binding commits inside the window
    await relaunch
    assert (await wait_bound(k8s, namespace, ["orphan"], within=60))["orphan"] == node
    assert sorted((await record_of(k8s, namespace, "orphan")).gpus) == list(range(8))

    seen: list[str] = []

    async def rival_refused() -> bool:
        await no_double_booking(k8s, namespace)
        assert not (await node_names(k8s, namespace)).get("rival"), "rival got orphan's GPUs"
        pending = await pending_reason(k8s, namespace, "rival")
        seen.append(
            pending.condition_message if pending is not None else ""
        )  # the condition: the latest verdict
        # retried after the restart (an extender error puts a pod in backoff, not with the unschedulable),
        # and refused: by gpuplace, or by kube-scheduler's own fit once orphan shows bound
        return "needs 8 free GPUs; 0 free here" in seen[-1] or "Insufficient nvidia.com/gpu" in seen[-1]

    try:
        await wait_until(rival_refused, within=90, what="rival to be retried and refused on orphan's GPUs")
    except WaitTimeoutError as e:
        log = window_gpuplace.log_file.read_text()[-3000:]
        raise AssertionError(f"{e}; rival's last reason: {seen[-1:]}\n{log}") from e
    await core.delete_namespaced_pod("orphan", namespace, grace_period_seconds=0)

    async def rival_bound_or_freed() -> str:
        if (await node_names(k8s, namespace)).get("rival"):
            return "bound"
        return (
            "freed"
            if (await asyncio.to_thread(window_gpuplace.node_gpus)).get(node, {}).get("allocated") == 0
            else ""
        )

    if await wait_until(rival_bound_or_freed, within=60, what="gpuplace to free orphan's GPUs") == "freed":
        # an extender-rejected pod is requeued by an update of itself (scheduler/README.md, #127290)
        await core.patch_namespaced_pod(
            "rival", namespace, {"metadata": {"annotations": {"test/nudge": "1"}}}
        )
    assert (await wait_bound(k8s, namespace, ["rival"], within=120))["rival"] == node
    await no_double_booking(k8s, namespace)
