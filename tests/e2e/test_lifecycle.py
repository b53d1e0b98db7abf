"""Pods that run, finish and go away: Jobs, Deployments, node loss and preemption with Terminating
victims on the real scheduler + gpuplace.

kube-controller-manager makes the pods of Jobs and Deployments and evicts pods from NotReady nodes;
kwok runs the pods on the fake nodes (Running, then Succeeded after ``gpuplace.io/kwok-duration``;
graceful deletion ends at the end of the grace period). An :class:`~gpuplace.localcluster.audit.AuditLoop`
checks every second, while each scenario runs, that no GPU is given to two live pods (Terminating pods
included: they hold their GPUs until they are gone). gpuplace's own view is read from its
``gpuplace_node_gpus`` gauge.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster import apps
from gpuplace.localcluster.audit import KEYS, AuditLoop
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.lifecycle import NOT_READY_LABEL, NOT_READY_TAINT, run_for
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound, wait_pending
from scheduler.contract import decode_record
from tests.e2e.helpers import NodeFactory, owner
from tests.e2e.preemption import PAIR, priority_classes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]


def _record(pod: Any) -> tuple[str, tuple[int, ...]]:
    raw = (pod.metadata.annotations or {}).get(KEYS.gpus)
    assert raw, f"{pod.metadata.name} was not bound by gpuplace (no {KEYS.gpus})"
    record = decode_record(raw)
    assert record.node == pod.spec.node_name
    return record.node, tuple(record.gpus)


async def _allocated(gp: GpuplaceServer, nodes: set[str]) -> dict[str, float]:
    view = await asyncio.to_thread(gp.node_gpus)
    return {n: view[n].get("allocated", 0.0) for n in nodes if n in view}


async def test_training_job_runs_to_completion_and_releases_gpus(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """completions 4, parallelism 2, one GPU each, on two 1-GPU nodes: the second wave can only run
    on the GPUs the first wave released."""
    mine = owner(namespace)
    nodes = {await node_factory("l4", labels=mine, topology=True) for _ in range(2)}
    job = apps.training_job(completions=4, parallelism=2, gpus=1, run_seconds=3, node_selector=mine)
    async with AuditLoop(k8s, namespaces=[namespace]) as loop:
        await apps.create(k8s, namespace, job)
        verdict = await wait_until(
            lambda: apps.job_finished(k8s, namespace, "model-training"), within=120, what="the Job to finish"
        )
    assert verdict == "Complete"
    pods = await apps.pods_of(k8s, namespace, "job-name=model-training")
    assert [p.status.phase for p in pods] == ["Succeeded"] * 4
    placements = [_record(p) for p in pods]
    assert {node for node, _ in placements} == nodes
    # Two GPUs, four pods, each GPU used by one pod of each wave.
    assert sorted(placements.count(p) for p in set(placements)) == [2, 2]
    assert loop.rounds >= 3 and loop.problems == []
    # gpuplace's model: every GPU free again.
    assert await wait_until(
        lambda: _all_free(gpuplace, nodes), within=30, what="gpuplace to show the GPUs free"
    )


async def _all_free(gp: GpuplaceServer, nodes: set[str]) -> bool:
    allocated = await _allocated(gp, nodes)
    return set(allocated) == nodes and not any(allocated.values())


async def test_inference_deployment_scales_up_and_down(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """2 replicas Running, scaled to 5 (all placed by gpuplace on distinct GPUs), then to 1 (the four
    terminating pods keep their GPUs until they are gone, then gpuplace shows one GPU allocated)."""
    mine = owner(namespace)
    node = await node_factory("hgx-h100", labels=mine, topology=True)
    deployment = apps.inference_deployment(replicas=2, gpus=1, node_selector=mine, termination_grace_seconds=3)
    async with AuditLoop(k8s, namespaces=[namespace]) as loop:
        await apps.create(k8s, namespace, deployment)
        for replicas in (2, 5, 1):
            await apps.scale(k8s, namespace, "inference-service", replicas)
            pods = await wait_until(
                lambda n=replicas: _exactly_running(k8s, namespace, n),  # type: ignore[misc]
                within=90,
                what=f"{replicas} Running replicas and no others",
            )
            placements = [_record(p) for p in pods]
            assert len({g for _, gpus in placements for g in gpus}) == replicas
            assert await wait_until(
                lambda n=replicas: _allocated_is(gpuplace, node, n),  # type: ignore[misc]
                within=30,
                what=f"gpuplace to show {replicas} GPUs allocated on {node}",
            )
    assert loop.rounds >= 3 and loop.problems == []


async def _exactly_running(k8s: client.ApiClient, namespace: str, n: int) -> list[Any] | None:
    pods = await apps.pods_of(k8s, namespace, "app=inference-service")
    running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return running if len(running) == n == len(pods) else None


async def _allocated_is(gp: GpuplaceServer, node: str, n: int) -> bool:
    return (await _allocated(gp, {node})).get(node) == n


async def test_node_loss_moves_gpu_pods_elsewhere(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """One node deleted and one going NotReady while each runs a replica: the pod-garbage-collector
    removes the deleted node's pod, the taint-eviction-controller evicts the NotReady node's pod after
    its (shortened) toleration, and the Deployment's replacements land on the spare nodes."""
    mine = owner(namespace)
    core = client.CoreV1Api(k8s)
    doomed = {await node_factory("l4", labels=mine, topology=True) for _ in range(2)}
    deployment = apps.inference_deployment(replicas=2, node_selector=mine, termination_grace_seconds=3)
    await apps.create(k8s, namespace, deployment)
    first = await wait_until(lambda: _exactly_running(k8s, namespace, 2), within=60, what="2 Running replicas")
    assert {p.spec.node_name for p in first} == doomed  # two 1-GPU nodes, two 1-GPU pods
    spares = {await node_factory("l4", labels=mine, topology=True) for _ in range(2)}
    deleted = next(p.spec.node_name for p in first)
    not_ready = next(n for n in doomed if n != deleted)

    async with AuditLoop(k8s, namespaces=[namespace]) as loop:
        await core.delete_node(deleted)
        patch: Any = {"metadata": {"labels": {NOT_READY_LABEL: "true"}}}
        await core.patch_node(not_ready, patch)
        await wait_until(lambda: _tainted(core, not_ready), within=30, what=f"{NOT_READY_TAINT} on {not_ready}")
        moved = await wait_until(
            lambda: _running_on(k8s, namespace, spares, 2), within=150, what="2 replicas Running on the spare nodes"
        )
    assert len({p.spec.node_name for p in moved}) == 2
    assert all(_record(p)[0] in spares for p in moved)
    assert loop.rounds >= 3 and loop.problems == []
    # gpuplace's model: the deleted node's GPUs are gone; nothing is allocated on the NotReady node...
    view = await asyncio.to_thread(gpuplace.node_gpus)
    assert deleted not in view
    assert view[not_ready].get("allocated") == 0
    # ... and its GPU is not free capacity either: kube-scheduler keeps pods that do not tolerate the
    # not-ready taint off it.
    assert (view[not_ready].get("free"), view[not_ready].get("unavailable")) == (0, 1), view[not_ready]
    assert {n for n in spares if view[n].get("allocated") == 1} == spares


async def _tainted(core: client.CoreV1Api, node: str) -> bool:
    taints = (await core.read_node(node)).spec.taints or []
    return any(t.key == NOT_READY_TAINT and t.effect == "NoExecute" for t in taints)


async def _running_on(k8s: client.ApiClient, namespace: str, nodes: set[str], n: int) -> list[Any] | None:
    pods = await apps.pods_of(k8s, namespace, "app=inference-service")
    if len(pods) != n:  # the lost replicas are gone, not only replaced
        return None
    ok = [p for p in pods if p.status.phase == "Running" and p.spec.node_name in nodes]
    return ok if len(ok) == n else None


async def test_kwok_runs_pods_to_the_end_they_are_given(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """Without a duration a pod runs until deleted; with one it succeeds, or fails with its exit code;
    a graceful deletion keeps the pod Terminating until the grace period is over."""
    mine = owner(namespace)
    await node_factory("cpu", labels=mine)
    core = client.CoreV1Api(k8s)
    pods = {
        "server": pod_manifest("server", node_selector=mine),
        "batch": pod_manifest("batch", node_selector=mine, annotations=run_for(1)),
        "crash": pod_manifest("crash", node_selector=mine, annotations=run_for(1, exit_code=3)),
    }
    pods["crash"]["spec"]["restartPolicy"] = "Never"
    for body in pods.values():
        await create_pod(k8s, namespace, body)

    async def phases() -> dict[str, str] | None:
        now = {p.metadata.name: p.status.phase for p in (await core.list_namespaced_pod(namespace)).items}
        return now if now == {"server": "Running", "batch": "Succeeded", "crash": "Failed"} else None

    await wait_until(phases, within=60, what="server Running, batch Succeeded, crash Failed")
    crash = await core.read_namespaced_pod("crash", namespace)
    assert crash.status.container_statuses[0].state.terminated.exit_code == 3
    batch = await core.read_namespaced_pod("batch", namespace)
    assert batch.status.container_statuses[0].state.terminated.reason == "Completed"

    await core.delete_namespaced_pod("server", namespace, grace_period_seconds=3)
    terminating = await core.read_namespaced_pod("server", namespace)
    assert terminating.metadata.deletion_timestamp is not None and terminating.status.phase == "Running"

    async def gone() -> bool:
        names = {p.metadata.name for p in (await core.list_namespaced_pod(namespace)).items}
        return "server" not in names

    await wait_until(gone, within=30, what="the graceful deletion to complete")


async def test_inference_preempts_training_and_waits_for_the_terminating_victims(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """An A40 node (NVLink bridges join GPUs in pairs) full of 1-GPU training pods with a 10 s grace
    period. A training pod of the same priority that needs a pair preempts nothing; an inference pod
    (higher priority) that needs a pair evicts exactly the two pods of one pair, which stay Terminating
    on their GPUs for their grace period; it then binds on its nominated node, on that pair."""
    mine = owner(namespace)
    node = await node_factory("a40-pairs", labels=mine, topology=True)
    core = client.CoreV1Api(k8s)
    async with priority_classes(k8s) as classes, AuditLoop(k8s, namespaces=[namespace]) as loop:

        def pod(name: str, cls: str, gpus: int) -> dict[str, Any]:
            body = pod_manifest(name, gpus=gpus, node_selector=mine, annotations=PAIR if gpus > 1 else None)
            body["spec"] |= {"priorityClassName": classes[cls], "terminationGracePeriodSeconds": 10}
            return body

        training = [f"train-{i}" for i in range(8)]
        for name in training:
            await create_pod(k8s, namespace, pod(name, "low1", 1))
            await wait_bound(k8s, namespace, [name])
        holder = {_record(await core.read_namespaced_pod(n, namespace))[1][0]: n for n in training}
        assert sorted(holder) == list(range(8))

        await create_pod(k8s, namespace, pod("train-pair", "low1", 2))
        await wait_pending(k8s, namespace, "train-pair")
        deleting = [p.metadata.name for p in (await core.list_namespaced_pod(namespace)).items
                    if p.metadata.deletion_timestamp]  # fmt: skip
        assert deleting == [], "equal priority must preempt nothing"

        await create_pod(k8s, namespace, pod("infer", "high", 2))
        seen_terminating: set[str] = set()

        async def bound() -> str | None:
            pods = {p.metadata.name: p for p in (await core.list_namespaced_pod(namespace)).items}
            seen_terminating.update(n for n, p in pods.items() if p.metadata.deletion_timestamp)
            return pods["infer"].spec.node_name if "infer" in pods else None

        assert await wait_until(bound, within=120, interval=0.2, what="the inference pod to bind") == node
        infer = await core.read_namespaced_pod("infer", namespace)
        gpus = _record(infer)[1]
    assert len(gpus) == 2 and gpus[0] // 2 == gpus[1] // 2  # one bridged pair
    victims = {holder[g] for g in gpus}
    remaining = {p.metadata.name for p in (await core.list_namespaced_pod(namespace)).items}
    assert victims.isdisjoint(remaining) and set(training) - victims <= remaining
    assert seen_terminating == victims  # they were Terminating, and nobody else was evicted
    assert "train-pair" in remaining  # still Pending: the freed pair was for the nominated pod
    assert loop.rounds >= 3 and loop.problems == []
