"""What gpuplace leaves to kube-scheduler, on the real kube-scheduler v1.36.3 (issue 9 items 6 and 9).

- Item 6: a cordoned node reaches the extender only for pods that tolerate
  `node.kubernetes.io/unschedulable` (NodeUnschedulable filtered the rest); gpuplace places them there.
- Item 9: gpuplace's prioritize scores are proportional (DefaultNormalizeScore), so between two
  near-equal GPU fits a preferred node affinity — worth at most 100 × NodeAffinity's weight 2 — still
  decides. Min–max scaling turned the near-tie into 0 vs 10, i.e. 500 points at the extender's weight 5.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from gpuplace.localcluster.fake_nodes import topology_document
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound, wait_pending
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner, record_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]

HOSTNAME = "kubernetes.io/hostname"
UNSCHEDULABLE_TOLERATION = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}


async def test_cordoned_gpu_node_takes_a_pod_that_tolerates_unschedulable(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    mine = owner(namespace)
    cordoned = await node_factory("hgx-h100", labels=mine, topology=True)
    await client.CoreV1Api(k8s).patch_node(cordoned, {"spec": {"unschedulable": True}})

    # Control: without the toleration, kube-scheduler's own NodeUnschedulable rejects the node.
    await create_pod(k8s, namespace, pod_manifest("plain", gpus=1, node_selector=mine))
    await wait_pending(k8s, namespace, "plain", contains="node(s) were unschedulable")

    body = pod_manifest("agent", gpus=2, node_selector=mine)
    body["spec"]["tolerations"] = [UNSCHEDULABLE_TOLERATION]
    await create_pod(k8s, namespace, body)
    assert (await wait_bound(k8s, namespace, ["agent"]))["agent"] == cordoned
    record = await record_of(k8s, namespace, "agent")  # bound by gpuplace, which chose the GPUs
    assert len(record.gpus) == 2
    assert (await audit_namespaces(k8s, namespace)).ok


def _prefer(body: dict[str, Any], node: str) -> dict[str, Any]:
    body["spec"]["affinity"] = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [node]}]}}
            ]
        }
    }
    return body


async def test_preferred_node_affinity_decides_between_near_equal_gpu_fits(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """Two 8-GPU nodes; `fuller` has 6 of 8 busy, `near` 5 of its 7 healthy GPUs busy. For one more GPU
    most-allocated scores 7/8 = 0.875 vs 6/7 = 0.857: a near tie. The pod prefers `near`."""
    mine = owner(namespace)
    fuller = await node_factory("hgx-h100", labels=mine, topology=True)
    near_name = f"near-{namespace[-6:]}"
    doc = topology_document(near_name, "hgx-h100")
    assert doc is not None
    doc["gpus"][7]["healthy"] = False
    near = await node_factory("hgx-h100", name=near_name, labels=mine, topology=doc)

    # The load goes through gpuplace too, so its model holds it from the bind on (no watch race).
    for name, node, gpus in (("load-fuller", fuller, 6), ("load-near", near, 5)):
        await create_pod(k8s, namespace, pod_manifest(name, gpus=gpus, node_selector={**mine, HOSTNAME: node}))
    await wait_bound(k8s, namespace, ["load-fuller", "load-near"])

    await create_pod(k8s, namespace, _prefer(pod_manifest("picky", gpus=1, node_selector=mine), near))
    assert (await wait_bound(k8s, namespace, ["picky"]))["picky"] == near
    record = await record_of(k8s, namespace, "picky")
    assert record.gpus[0] != 7  # never the unhealthy GPU
    assert (await audit_namespaces(k8s, namespace)).ok
