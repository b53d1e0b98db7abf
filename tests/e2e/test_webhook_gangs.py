"""The webhook's gang keys and its requests/limits rule on the real control plane (kube-apiserver and
kube-scheduler v1.36.3, gpuplace serve with deploy/'s RBAC and registration).

There is no kube-controller-manager here, so a Job's pods are created the way its controller creates
them: with the Job as controlling ownerReference, the job-name label and the completion index.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.workload import PAUSE_IMAGE, create_pod, pod_manifest, wait_bound
from tests.e2e.helpers import NodeFactory, owner

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]

GPU = "nvidia.com/gpu"


def job_manifest(name: str, *, completions: int, mode: str, resources: dict[str, Any]) -> dict[str, Any]:
    container = {"name": "main", "image": PAUSE_IMAGE, "resources": resources}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "parallelism": completions,
            "completions": completions,
            "completionMode": mode,
            "suspend": True,  # nothing would run it here anyway; says so to a reader of the object
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def member(job: Any, index: int, node_selector: dict[str, str]) -> dict[str, Any]:
    body = pod_manifest(f"{job.metadata.name}-{index}", gpus=1, node_selector=node_selector)
    body["metadata"]["labels"] = {"batch.kubernetes.io/job-name": job.metadata.name}
    body["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job.metadata.name,
            "uid": job.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return body


async def test_an_indexed_job_s_pods_get_gpuplace_gang_keys_not_the_scheduler_plugins_label_and_bind(
    k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    mine = owner(namespace)
    await node_factory("hgx-h100", labels=mine, topology=True)
    batch = client.BatchV1Api(k8s)
    limits_only = {"limits": {GPU: "1"}}
    indexed = await batch.create_namespaced_job(
        namespace, job_manifest("train", completions=2, mode="Indexed", resources=limits_only)
    )
    non_indexed = await batch.create_namespaced_job(
        namespace, job_manifest("queue", completions=2, mode="NonIndexed", resources=limits_only)
    )

    created = [await create_pod(k8s, namespace, member(indexed, i, mine)) for i in range(2)]
    for pod in created:  # read through the shipped RBAC (get jobs), patched at admission
        assert pod.metadata.labels.get("gpuplace.io/gang") == "job_train"
        assert pod.metadata.annotations.get("gpuplace.io/gang-min-member") == "2"
        assert "scheduling.x-k8s.io/pod-group" not in pod.metadata.labels
    lone = await create_pod(k8s, namespace, member(non_indexed, 0, mine))
    assert "gpuplace.io/gang" not in lone.metadata.labels  # upstream does not gang NonIndexed Jobs
    assert "gpuplace.io/gang-min-member" not in (lone.metadata.annotations or {})

    # kube-scheduler (with gpuplace as extender) places them; nothing waits on a PodGroup object.
    names = [pod.metadata.name for pod in created] + [lone.metadata.name]
    await wait_bound(k8s, namespace, names)


async def test_a_gpu_request_without_a_limit_is_refused_for_a_pod_as_the_apiserver_refuses_it_for_a_job(
    k8s: client.ApiClient, namespace: str
) -> None:
    requests_only = {"requests": {GPU: "2", "cpu": "1"}}
    with pytest.raises(ApiException) as job_refused:
        await client.BatchV1Api(k8s).create_namespaced_job(
            namespace, job_manifest(f"j-{secrets.token_hex(2)}", completions=1, mode="NonIndexed", resources=requests_only)
        )
    assert job_refused.value.status == 422
    assert "Limit must be set for non overcommitable resources" in json.loads(job_refused.value.body)["message"]

    body = pod_manifest("bare")
    body["spec"]["containers"][0]["resources"] = requests_only
    with pytest.raises(ApiException) as pod_refused:
        await create_pod(k8s, namespace, body)
    status = json.loads(pod_refused.value.body or "{}")
    assert status["code"] == 403
    assert 'admission webhook "pods.gpuplace.io" denied the request' in status["message"]
    assert 'container "main": nvidia.com/gpu requests 2 but sets no limit' in status["message"]
    assert "set limits nvidia.com/gpu: 2" in status["message"]
