"""Preemption through gpuplace on upstream kube-scheduler v1.36.3 (scheduler.verbs.preempt).

The node is an 8x A40 box whose NVLink bridges join GPUs in pairs (0-1, 2-3, 4-5, 6-7), so which GPUs
the victims free decides whether a 2-GPU NVLink pod fits. kube-scheduler's dry run counts GPUs only;
gpuplace keeps its victims and adds what frees a bridged pair. Victims have
terminationGracePeriodSeconds 0, so kube-apiserver deletes them at once (no kubelet needed).

Low pods are placed one by one through gpuplace and their GPUs read from their records, so each test
builds exactly the layout it needs whatever GPU-choice policy gpuplace runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import create_pod, node_names, wait_bound, wait_pending
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner, read_pod, record_of
from tests.e2e.preemption import PAIR, Layout, extender, gpu_pod, metric, priority_classes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]


@pytest.fixture
async def priorities(k8s: client.ApiClient) -> AsyncIterator[dict[str, str]]:
    async with priority_classes(k8s) as names:
        yield names


async def test_preemption_adds_the_fewest_victims_that_free_a_bridged_pair(
    gpuplace: GpuplaceServer,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    priorities: dict[str, str],
) -> None:
    """kube-scheduler's dry run picks the two lowest-priority pods, which sit on different pairs:
    evicting only them frees no pair (the old code left the node out, so nothing happened). gpuplace
    keeps both and adds ONE partner; the high pod binds on its nominated node, on the freed pair."""
    node = await node_factory("a40-pairs", labels=owner(namespace), topology=True)
    lay = Layout(k8s, namespace, node, priorities)
    await lay.load_topology()
    a, b = await lay.split_pair("low1", "low2")
    before = dict(lay.holder)
    preempts = metric(gpuplace, "gpuplace_extender_request_seconds_count", 'verb="preempt"')

    await create_pod(k8s, namespace, lay.body("high", "high", gpus=2, annotations=PAIR))
    assert (await wait_bound(k8s, namespace, ["high"], within=120))["high"] == node
    got = (await record_of(k8s, namespace, "high")).gpus
    assert sorted(got) in (
        [min(a, lay.partner[a]), max(a, lay.partner[a])],
        [min(b, lay.partner[b]), max(b, lay.partner[b])],
    )

    left = {n for n, on in (await node_names(k8s, namespace)).items() if on}
    gone = set(before.values()) - left
    partners = {before[lay.partner[a]], before[lay.partner[b]]}
    assert len(gone) == 3 and {"va", "vb"} <= gone and len(gone & partners) == 1, gone
    assert metric(gpuplace, "gpuplace_extender_request_seconds_count", 'verb="preempt"') > preempts
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_preemption_goes_ahead_when_only_in_tree_filters_need_victims(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory, priorities: dict[str, str]
) -> None:
    """The high pod needs host port 7000, held by a low pod; GPUs (a free pair) are no problem. The dry
    run names the port holder; gpuplace sees a fit and must keep that victim (the old code answered an
    empty list, which kube-scheduler v1.36 treats as an error that abandons the preemption)."""
    node = await node_factory("a40-pairs", labels=owner(namespace), topology=True)
    lay = Layout(k8s, namespace, node, priorities)

    def with_port(body: dict[str, Any]) -> dict[str, Any]:
        body["spec"]["containers"][0]["ports"] = [{"containerPort": 7000, "hostPort": 7000}]
        return body

    await create_pod(k8s, namespace, with_port(lay.body("porter", "low1")))
    others = ["o0", "o1"]
    for name in others:
        await lay.place(name, "low1")
    await wait_bound(k8s, namespace, ["porter"])

    await create_pod(k8s, namespace, with_port(lay.body("high", "high", gpus=2, annotations=PAIR)))
    assert (await wait_bound(k8s, namespace, ["high"], within=120))["high"] == node
    left = await node_names(k8s, namespace)
    assert "porter" not in left and all(left.get(n) == node for n in others)
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_nothing_is_preempted_when_only_equal_priority_pods_would_free_a_pair(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory, priorities: dict[str, str]
) -> None:
    """The dry run would evict the two low pods (on different pairs); their partners have the high
    pod's own priority and may not be evicted. Evicting the two frees no pair, so gpuplace leaves the
    node out and nothing is preempted (kube-scheduler alone would evict both for nothing)."""
    node = await node_factory("a40-pairs", labels=owner(namespace), topology=True)
    lay = Layout(k8s, namespace, node, priorities)
    await lay.load_topology()
    await lay.split_pair("low1", "high")

    await create_pod(k8s, namespace, lay.body("high", "high", gpus=2, annotations=PAIR))
    await wait_pending(k8s, namespace, "high", contains="no candidate node for preemption", within=60)
    pods = {n: await read_pod(k8s, namespace, n) for n in ("va", "vb", "high")}
    assert all(p.metadata.deletion_timestamp is None for p in pods.values())
    assert pods["va"].spec.node_name == pods["vb"].spec.node_name == node
    assert not pods["high"].status.nominated_node_name
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems


async def test_pdb_guarded_pods_are_the_first_to_reprieve(
    gpuplace: GpuplaceServer,
    k8s: client.ApiClient,
    namespace: str,
    node_factory: NodeFactory,
    priorities: dict[str, str],
) -> None:
    """Either partner completes a pair. va's partner (priority 200) is less important than vb's (300),
    so by importance alone it would go; but a PodDisruptionBudget guards it (no disruption controller
    runs here, so status.disruptionsAllowed stays 0: every guarded pod violates). As upstream's
    SelectVictimsOnNode does, the violating pod is the first to reprieve and vb's partner is evicted."""
    node = await node_factory("a40-pairs", labels=owner(namespace), topology=True)
    lay = Layout(k8s, namespace, node, priorities)
    await lay.load_topology()
    guard = {"e2e.gpuplace.io/guarded": "true"}
    a, b = await lay.split_pair("low1", "low2", rest_cls="mid", partner_labels=guard)
    guarded, other = lay.holder[lay.partner[a]], lay.holder[lay.partner[b]]
    assert guarded.startswith("pa") and other.startswith("rest"), lay.holder
    pdb: Any = {
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": guard}},
    }
    await client.PolicyV1Api(k8s).create_namespaced_pod_disruption_budget(namespace, pdb)

    uid = {n: (await read_pod(k8s, namespace, n)).metadata.uid for n in set(lay.holder.values())}
    ask = {
        "Pod": gpu_pod("probe", namespace, gpus=2, priority=1000),
        "NodeNameToMetaVictims": {
            node: {"Pods": [{"UID": uid["va"]}, {"UID": uid["vb"]}], "NumPDBViolations": 0}
        },
    }

    async def gpuplace_knows_the_budget() -> bool:
        answer = await asyncio.to_thread(extender, gpuplace, "preempt", ask)
        return uid[other] in [p["UID"] for p in answer["NodeNameToMetaVictims"][node]["Pods"]]

    await wait_until(gpuplace_knows_the_budget, within=60, what="gpuplace's preempt to read the PDB")

    await create_pod(k8s, namespace, lay.body("high", "high", gpus=2, annotations=PAIR))
    assert (await wait_bound(k8s, namespace, ["high"], within=120))["high"] == node
    left = {n for n, on in (await node_names(k8s, namespace)).items() if on}
    assert set(lay.holder.values()) - left == {"va", "vb", other}
    assert sorted((await record_of(k8s, namespace, "high")).gpus) == sorted([b, lay.partner[b]])
    result = await audit_namespaces(k8s, namespace)
    assert result.ok, result.problems
