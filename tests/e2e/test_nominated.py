"""GPUs freed by preemption stay with the nominated pod until it binds (scheduler.nominated).

Two kube-schedulers v1.36.3 share gpuplace as their extender (as deploy/second-scheduler does). The
first preempts for a high-priority pod and nominates it; each kube-scheduler's own nominator only
knows the pods of its own profiles, so the second one's in-tree filters see the freed GPUs as free.
Only gpuplace can keep them for the nominated pod.

The window is made deterministic without sleeps: the victim carries a finalizer, so it stays
terminating (its GPUs held) while the first scheduler nominates the preemptor; the first scheduler is
then stopped, the finalizer removed, and — once gpuplace counts the GPUs as free — the lower-priority
pod is created for the second scheduler. Nothing can bind the nominated pod meanwhile, so whether the
low pod takes the GPUs depends on gpuplace alone. Restarting the first scheduler then binds the
nominated pod on its node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import create_pod, wait_bound, wait_pending
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner, read_pod, record_of
from tests.e2e.preemption import PAIR, Layout, extender, gpu_pod, priority_classes

pytestmark = pytest.mark.e2e  # runs its own kube-schedulers: never combine with gpuplace_scheduler

SECOND = "gpuplace-e2e-second"
HOLD = "e2e.gpuplace.io/hold"


@pytest.fixture
async def priorities(k8s: client.ApiClient) -> AsyncIterator[dict[str, str]]:
    async with priority_classes(k8s) as names:
        yield names


async def test_gpus_freed_for_a_nominated_pod_are_not_given_to_a_lower_priority_pod(
    control_plane: ControlPlane,
    gpuplace: GpuplaceServer,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    priorities: dict[str, str],
) -> None:
    core = client.CoreV1Api(k8s)
    node = await node_factory("a40-pairs", labels=owner(namespace), topology=True)
    lay = Layout(k8s, namespace, node, priorities)
    start = asyncio.to_thread
    first = await start(
        control_plane.start_scheduler, gpuplace.scheduler_config(), name="kube-scheduler-first"
    )
    second = None
    try:
        victim = lay.body("victim", "low1", gpus=2, annotations=PAIR)
        victim["metadata"]["finalizers"] = [HOLD]
        await create_pod(k8s, namespace, victim)
        await wait_bound(k8s, namespace, ["victim"])
        freed = (await record_of(k8s, namespace, "victim")).gpus
        for i in range(3):
            await lay.place(f"f{i}", "low2", gpus=2, annotations=PAIR)

        await create_pod(k8s, namespace, lay.body("high", "high", gpus=2, annotations=PAIR))

        async def nominated_and_terminating() -> bool:
            high, v = await read_pod(k8s, namespace, "high"), await read_pod(k8s, namespace, "victim")
            return high.status.nominated_node_name == node and v.metadata.deletion_timestamp is not None

        await wait_until(nominated_and_terminating, within=60, what="high nominated, victim terminating")
        await start(control_plane.stop_process, first.name)

        await core.patch_namespaced_pod(
            "victim", namespace, [{"op": "remove", "path": "/metadata/finalizers"}]
        )

        async def gpuplace_sees_freed() -> bool:
            """gpuplace's own filter passes the node for a pod above the nominated one's priority."""
            probe = gpu_pod("probe", namespace, gpus=2, priority=1001)
            answer = await asyncio.to_thread(
                extender, gpuplace, "filter", {"Pod": probe, "NodeNames": [node]}
            )
            return bool(answer["NodeNames"] == [node])

        await wait_until(gpuplace_sees_freed, within=60, what="gpuplace to count the victim's GPUs free")
        high = await read_pod(k8s, namespace, "high")
        assert high.status.nominated_node_name == node and not high.spec.node_name

        second = await start(
            control_plane.start_scheduler,
            gpuplace.scheduler_config(profiles=[{"schedulerName": SECOND}]),
            name="kube-scheduler-second",
        )
        low = lay.body("low", "low2", gpus=2, annotations=PAIR)
        low["spec"]["schedulerName"] = SECOND
        await create_pod(k8s, namespace, low)
        held = f"counting the GPUs held for nominated pod {namespace}/high (priority 1000)"
        await wait_pending(k8s, namespace, "low", contains=held)  # gpuplace's reason, not kube-scheduler's

        first = await start(
            control_plane.start_scheduler, gpuplace.scheduler_config(), name="kube-scheduler-first"
        )
        assert (await wait_bound(k8s, namespace, ["high"], within=60))["high"] == node
        assert sorted((await record_of(k8s, namespace, "high")).gpus) == sorted(freed)
        assert not (await read_pod(k8s, namespace, "low")).spec.node_name
        result = await audit_namespaces(k8s, namespace)
        assert result.ok, result.problems
    finally:
        try:
            await core.patch_namespaced_pod("victim", namespace, {"metadata": {"finalizers": None}})
        except ApiException as exc:
            if exc.status not in (404, 422):
                raise
        for process in (first, second):
            if process is not None:
                await start(control_plane.stop_process, process.name)
