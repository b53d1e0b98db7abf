"""gpuplace on the real control plane: webhook, extender filter/prioritize/bind, reasons, MIG.

One ``gpuplace serve`` process and one kube-scheduler with gpuplace as extender serve the whole
module; every test makes its own fake nodes labelled with its namespace and selects them with a
nodeSelector, so tests never see each other's capacity. Pods are written as users write them:
GPU amounts in ``limits`` only and no toleration — the webhook supplies both.
"""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.fake_nodes import topology_document
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound, wait_pending
from tests.e2e.helpers import (
    NodeFactory,
    audit_namespaces,
    node_topology,
    nvlink_islands,
    owner,
    read_pod,
    record_of,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]

GPU = "nvidia.com/gpu"


def _metric(gp: GpuplaceServer, name: str, labels: str) -> float:
    status, body = probe(f"{gp.extender_base}/metrics", ca_file=gp.cp.ca_file)
    assert status == 200
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _calls(gp: GpuplaceServer, verb: str) -> float:
    """How many times kube-scheduler called this extender verb (gpuplace's own request histogram)."""
    return _metric(gp, "gpuplace_extender_request_seconds_count", f'verb="{verb}"')


async def test_shipped_rbac_is_enough(gpuplace: GpuplaceServer) -> None:
    """gpuplace runs with the ServiceAccount and rules from deploy/, not with anything added by the harness."""
    assert gpuplace.credentials is not None
    assert gpuplace.credentials.username.startswith("system:serviceaccount:")
    assert not gpuplace.rbac_fallback, "deploy/ gives gpuplace's ServiceAccount no pods/binding create"


async def test_limits_only_gpu_pod_is_mutated_scheduled_and_bound_by_gpuplace(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    mine = owner(namespace)
    h100 = await node_factory("hgx-h100", labels=mine, topology=True)
    await node_factory("cpu", labels=mine)
    binds_before = _metric(gpuplace, "gpuplace_binds_total", 'result="ok"')

    body = pod_manifest("trainer", gpus=2, node_selector=mine)
    assert "tolerations" not in body["spec"]
    assert GPU not in body["spec"]["containers"][0]["resources"]["requests"]
    created = await create_pod(k8s, namespace, body)

    # Mutated by the webhook at admission: toleration for the GPU taint, requests = limits.
    tolerations = [(t.key, t.operator, t.effect) for t in created.spec.tolerations or []]
    assert (GPU, "Exists", "NoSchedule") in tolerations
    resources = created.spec.containers[0].resources
    assert resources.requests[GPU] == resources.limits[GPU] == "2"

    # Scheduled through the extender and bound by gpuplace, which recorded the exact GPUs.
    assert (await wait_bound(k8s, namespace, ["trainer"]))["trainer"] == h100
    record = await record_of(k8s, namespace, "trainer")
    assert len(record.gpus) == 2 and record.milli == 1000 and not record.mig
    topology = await node_topology(k8s, h100)
    uuids = [topology["gpus"][g]["uuid"] for g in record.gpus]
    assert list(record.uuids) == uuids
    pod = await read_pod(k8s, namespace, "trainer")
    assert pod.metadata.annotations["gpuplace.io/gpu-uuids"] == ",".join(uuids)
    assert _metric(gpuplace, "gpuplace_binds_total", 'result="ok"') >= binds_before + 1


async def test_only_gpu_pods_are_let_onto_gpu_nodes(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """The GPU taint keeps every pod off GPU nodes; gpuplace's webhook lets GPU pods past it (the toleration)
    and no others, and its extender is consulted for GPU pods only (managedResources)."""
    mine = owner(namespace)
    gpu_nodes = {await node_factory("hgx-h100", labels=mine, topology=True),
                 await node_factory("l4", labels=mine, topology=True)}  # fmt: skip
    cpu_node = await node_factory("cpu", labels=mine)

    # A GPU pod written without a toleration reaches a GPU node: only gpuplace's webhook adds one.
    await create_pod(k8s, namespace, pod_manifest("gpu-job", gpus=1, node_selector=mine))
    assert (await wait_bound(k8s, namespace, ["gpu-job"]))["gpu-job"] in gpu_nodes
    assert (await record_of(k8s, namespace, "gpu-job")).gpus
    filters = _calls(gpuplace, "filter")

    names = [f"web-{i}" for i in range(4)]
    for name in names:
        created = await create_pod(k8s, namespace, pod_manifest(name, cpu="500m", memory="1Gi", node_selector=mine))
        assert not any(t.key == GPU for t in created.spec.tolerations or [])
    placed = await wait_bound(k8s, namespace, names)
    assert set(placed.values()) == {cpu_node}

    # With only GPU nodes to choose from, a CPU pod stays Pending on the taint (no webhook toleration for it).
    gpu_only = {**mine, "nvidia.com/gpu.present": "true"}
    created = await create_pod(k8s, namespace, pod_manifest("lost", node_selector=gpu_only))
    assert not any(t.key == GPU for t in created.spec.tolerations or [])
    pending = await wait_pending(k8s, namespace, "lost", contains="untolerated taint")
    assert f"{len(gpu_nodes)} node(s) had untolerated taint" in pending.event_message
    assert _calls(gpuplace, "filter") == filters  # five CPU pods scheduled, none sent to the extender


async def test_inconsistent_gpu_requests_and_limits_are_refused_with_gpuplace_message(
    k8s: client.ApiClient, namespace: str
) -> None:
    body = pod_manifest("bad", gpus=2)
    body["spec"]["containers"][0]["resources"]["requests"][GPU] = "1"
    with pytest.raises(ApiException) as refused:
        await create_pod(k8s, namespace, body)
    status = json.loads(refused.value.body or "{}")
    assert status["code"] == 403
    message = status["message"]
    assert 'admission webhook "pods.gpuplace.io" denied the request' in message
    assert "nvidia.com/gpu requests 1 but limits 2" in message
    assert "GPU requests must equal limits" in message


async def test_nvlink_required_pod_gets_an_island_or_waits_with_gpuplace_reason(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    mine = owner(namespace)
    # DGX-1 V100 (hybrid cube-mesh: two fully linked quads) and 8x A40 (NVLink bridge pairs only).
    v100 = await node_factory("dgx1-v100", labels=mine, topology=True)
    await node_factory("a40-pairs", labels=mine, topology=True)
    nvlink = {"gpuplace.io/nvlink": "required"}
    topology = await node_topology(k8s, v100)
    for name in ("ring-a", "ring-b"):
        await create_pod(k8s, namespace, pod_manifest(name, gpus=4, annotations=nvlink, node_selector=mine))
        assert (await wait_bound(k8s, namespace, [name]))[name] == v100
        record = await record_of(k8s, namespace, name)
        assert len(nvlink_islands(topology, record.gpus)) == 1, f"{name} got {record.gpus}: not one NVLink island"

    # The V100 is full; the A40 node has 8 free GPUs but no 4-GPU NVLink island: Pending, with gpuplace's reason.
    await create_pod(k8s, namespace, pod_manifest("ring-c", gpus=4, annotations=nvlink, node_selector=mine))
    pending = await wait_pending(
        k8s, namespace, "ring-c", contains="needs 4 NVLink-connected GPUs; largest NVLink island on this node is 2"
    )
    assert pending.condition_reason == "Unschedulable"
    assert (await read_pod(k8s, namespace, "ring-c")).spec.node_name is None
    assert (await audit_namespaces(k8s, namespace)).ok


async def test_model_and_memory_constraints(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    mine = owner(namespace)
    h100 = await node_factory("hgx-h100", labels=mine, topology=True)
    v100 = await node_factory("dgx1-v100", labels=mine, topology=True)
    l4 = await node_factory("l4", labels=mine, topology=True)
    cases = {
        # gpuplace annotations
        "by-model": ({"gpuplace.io/gpu-models": "V100-32GB"}, {}, v100),
        "by-memory": ({"gpuplace.io/gpu-memory-mib": "40000"}, {}, h100),
        "by-gfd-product": ({"gpuplace.io/gpu-models": "NVIDIA-L4"}, {}, l4),
        # A GFD label in a nodeSelector: kube-scheduler's own NodeAffinity filter picks the node; this case
        # shows gpuplace still binds such a pod (its record below), not that gpuplace chose the node.
        "by-selector": ({}, {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, h100),
    }
    for name, (notes, selector, _) in cases.items():
        await create_pod(k8s, namespace,
                         pod_manifest(name, gpus=1, annotations=notes, node_selector={**mine, **selector}))  # fmt: skip
    placed = await wait_bound(k8s, namespace, list(cases))
    assert placed == {name: want for name, (_, _, want) in cases.items()}
    for name in cases:  # gpuplace's annotations are not kube-scheduler's: only gpuplace's bind honours them
        assert (await record_of(k8s, namespace, name)).node == placed[name]

    await create_pod(k8s, namespace, pod_manifest(
        "no-such-model", gpus=1, annotations={"gpuplace.io/gpu-models": "A100-80GB"}, node_selector=mine))  # fmt: skip
    await create_pod(k8s, namespace, pod_manifest(
        "too-much-memory", gpus=1, annotations={"gpuplace.io/gpu-memory-mib": "90000"}, node_selector=mine))  # fmt: skip
    await wait_pending(k8s, namespace, "no-such-model", contains="GPU model is not one of A100-80GB")
    await wait_pending(k8s, namespace, "too-much-memory", contains="needs GPUs with ≥ 90000 MiB")
    assert (await audit_namespaces(k8s, namespace)).ok


async def test_mig_pods_only_on_healthy_instances_of_their_profile(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """GPU 1 of the MIG node is unhealthy in its topology annotation while its allocatable still counts its
    two 3g.40gb instances: kube-scheduler's count check would admit four 3g.40gb pods, gpuplace two."""
    mine = owner(namespace)
    name = f"a100-80gb-mig-{namespace[-6:]}"
    topology = topology_document(name, "a100-80gb-mig")  # GPUs 0-1: 2x 3g.40gb, 2-3: 7x 1g.10gb, 4-7 whole
    assert topology is not None
    topology["gpus"][1]["healthy"] = False
    a100 = await node_factory("a100-80gb-mig", name=name, labels=mine, topology=topology)
    await node_factory("hgx-h100", labels=mine, topology=True)  # no MIG
    pods = {f"mig3g-{i}": ("3g.40gb", 1) for i in range(2)} | {"mig1g-pair": ("1g.10gb", 2)}
    for pod, (profile, count) in pods.items():
        await create_pod(k8s, namespace, pod_manifest(pod, gpus=count, mig=profile, node_selector=mine))
    placed = await wait_bound(k8s, namespace, list(pods))
    assert set(placed.values()) == {a100}
    for pod, (profile, count) in pods.items():
        record = await record_of(k8s, namespace, pod)
        assert len(record.mig) == count and not record.gpus
        for gpu, slot in record.mig:
            assert gpu != 1, f"{pod} got an instance of the unhealthy GPU"
            assert topology["gpus"][gpu]["mig"][slot]["profile"] == profile

    # GPU 0's two 3g.40gb instances are taken; in-tree counts say two more fit; gpuplace says why not.
    await create_pod(k8s, namespace, pod_manifest("mig3g-extra", gpus=1, mig="3g.40gb", node_selector=mine))
    await wait_pending(k8s, namespace, "mig3g-extra", contains="needs 1× MIG 3g.40gb; 0 free here")
    assert (await read_pod(k8s, namespace, "mig3g-extra")).spec.node_name is None
    assert (await audit_namespaces(k8s, namespace)).ok


async def test_scheduler_calls_every_verb_over_https(
    gpuplace: GpuplaceServer, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    """Counted on gpuplace's side (its only listener is HTTPS): one GPU pod with two fitting nodes costs
    kube-scheduler one filter, one prioritize and one bind call."""
    assert gpuplace.extender_base.startswith("https://")
    status, body = probe(f"{gpuplace.extender_base}/readyz", ca_file=gpuplace.cp.ca_file)
    assert (status, body) == (200, "ready")
    mine = owner(namespace)
    nodes = {await node_factory("hgx-h100", labels=mine, topology=True) for _ in range(2)}
    before = {verb: _calls(gpuplace, verb) for verb in ("filter", "prioritize", "bind")}
    await create_pod(k8s, namespace, pod_manifest("counted", gpus=1, node_selector=mine))
    assert (await wait_bound(k8s, namespace, ["counted"]))["counted"] in nodes
    assert (await record_of(k8s, namespace, "counted")).gpus
    after = {verb: _calls(gpuplace, verb) for verb in before}
    assert {verb: after[verb] - before[verb] for verb in before} == {"filter": 1, "prioritize": 1, "bind": 1}
