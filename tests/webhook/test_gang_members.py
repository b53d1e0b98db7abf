"""Rule 3: a derived gang counts only the members that request a managed GPU resource.

Only those pods reach the webhook and gpuplace's scheduler; counting a CPU-only replicated job, a CPU
LeaderWorkerSet leader or a CPU PyTorchJob replica type would make an all-or-nothing consumer wait for
members that never come.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhook.helpers import gang, gpu_pod, obj, owner_ref, run
from webhook.owners import DictOwners
from webhook.settings import WebhookSettings


def template(resources: dict[str, str], where: str = "limits", init: bool = False) -> dict[str, Any]:
    container = {"name": "c", "resources": {where: resources}}
    spec: dict[str, Any] = {"containers": [{"name": "main"}]}
    spec["initContainers" if init else "containers"] = [container]
    return {"spec": spec}


GPU = template({"nvidia.com/gpu": "8"})
MIG = template({"nvidia.com/mig-1g.10gb": "1"}, where="requests")
GPU_IN_INIT = template({"nvidia.com/gpu": "1"}, init=True)
CPU = template({"cpu": "4", "memory": "8Gi"})
JOBSET = "jobset.x-k8s.io/v1alpha2"


def rjob(name: str, replicas: int, width: int, pod_template: dict[str, Any]) -> dict[str, Any]:
    spec = {"parallelism": width, "completions": width, "completionMode": "Indexed", "template": pod_template}
    return {"name": name, "replicas": replicas, "template": {"spec": spec}}


def jobset_pod(rjob_name: str) -> dict[str, Any]:
    labels = {"jobset.sigs.k8s.io/jobset-name": "llm", "jobset.sigs.k8s.io/replicatedjob-name": rjob_name}
    return gpu_pod(labels=labels, owners=[owner_ref("Job", f"llm-{rjob_name}-0")])


async def test_jobset_counts_only_its_gpu_replicated_jobs() -> None:
    js = obj(
        JOBSET,
        "JobSet",
        "llm",
        {"replicatedJobs": [rjob("workers", 2, 4, GPU), rjob("coordinator", 1, 1, CPU), rjob("eval", 3, 1, MIG)]},
    )
    result = await run(jobset_pod("workers"), owners=DictOwners([js]))
    assert gang(result) == ("jobset_llm", "11")  # 2×4 workers + 3 eval; the CPU coordinator never arrives


async def test_a_cpu_replicated_job_of_any_shape_does_not_stop_the_gpu_gang() -> None:
    queue = {"name": "loader", "replicas": 1, "template": {"spec": {"parallelism": 2, "completions": 50, "template": CPU}}}
    js = obj(JOBSET, "JobSet", "llm", {"replicatedJobs": [rjob("workers", 2, 2, GPU), queue]})
    assert gang(await run(jobset_pod("workers"), owners=DictOwners([js]))) == ("jobset_llm", "4")


async def test_a_jobset_with_one_gpu_pod_is_no_gang() -> None:
    js = obj(JOBSET, "JobSet", "llm", {"replicatedJobs": [rjob("workers", 1, 1, GPU), rjob("cpu", 4, 1, CPU)]})
    assert gang(await run(jobset_pod("workers"), owners=DictOwners([js]))) == (None, None)


LWS = "leaderworkerset.x-k8s.io/v1"


def lws_pod(worker: str) -> dict[str, Any]:
    labels = {
        "leaderworkerset.sigs.k8s.io/name": "serve",
        "leaderworkerset.sigs.k8s.io/group-index": "0",
        "leaderworkerset.sigs.k8s.io/worker-index": worker,
    }
    return gpu_pod(labels=labels)


async def test_a_cpu_leaderworkerset_leader_is_not_counted() -> None:
    lws = obj(LWS, "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": {"size": 4, "leaderTemplate": CPU, "workerTemplate": GPU}})
    assert gang(await run(lws_pod("2"), owners=DictOwners([lws]))) == ("lws_serve_0", "3")


async def test_a_leaderworkerset_without_a_leader_template_uses_the_worker_template_for_the_leader() -> None:
    lws = obj(LWS, "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": {"size": 4, "workerTemplate": GPU}})
    assert gang(await run(lws_pod("0"), owners=DictOwners([lws]))) == ("lws_serve_0", "4")


async def test_gpu_leader_with_cpu_workers_is_no_gang() -> None:
    lws = obj(LWS, "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": {"size": 4, "leaderTemplate": GPU, "workerTemplate": CPU}})
    assert gang(await run(lws_pod("0"), owners=DictOwners([lws]))) == (None, None)


PYTORCH_LABELS = {
    "training.kubeflow.org/job-name": "ddp",
    "training.kubeflow.org/replica-type": "worker",
    "training.kubeflow.org/operator-name": "pytorchjob-controller",
}


def pytorchjob(**spec: Any) -> dict[str, Any]:
    replicas = {"Master": {"replicas": 1, "template": CPU}, "Worker": {"replicas": 4, "template": GPU_IN_INIT}}
    return obj("kubeflow.org/v1", "PyTorchJob", "ddp", {"pytorchReplicaSpecs": replicas, **spec})


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({}, "4"),  # the CPU Master never arrives
        ({"runPolicy": {"schedulingPolicy": {"minAvailable": 5}}}, "4"),  # 5 pods, of which 1 is the CPU Master
        ({"runPolicy": {"schedulingPolicy": {"minAvailable": 3}}}, "2"),
        ({"runPolicy": {"schedulingPolicy": {"minAvailable": 2}}}, None),  # one GPU pod suffices: no gang
        ({"elasticPolicy": {"minReplicas": 3, "maxReplicas": 8}}, "2"),
    ],
)
async def test_pytorchjob_counts_only_replica_types_with_gpus(spec: dict[str, Any], size: str | None) -> None:
    p = gpu_pod(owners=[owner_ref("PyTorchJob", "ddp", api_version="kubeflow.org/v1")], labels=PYTORCH_LABELS)
    expected = ("pytorchjob_ddp", size) if size else (None, None)
    assert gang(await run(p, owners=DictOwners([pytorchjob(**spec)]))) == expected


async def test_extra_resources_count_as_gpus_in_templates() -> None:
    settings = WebhookSettings(extra_resources=("nvidia.com/gpu.shared",))
    shared = template({"nvidia.com/gpu.shared": "1"})
    js = obj(JOBSET, "JobSet", "llm", {"replicatedJobs": [rjob("workers", 2, 2, GPU), rjob("shared", 2, 1, shared)]})
    assert gang(await run(jobset_pod("workers"), settings=settings, owners=DictOwners([js]))) == ("jobset_llm", "6")
    assert gang(await run(jobset_pod("workers"), owners=DictOwners([js]))) == ("jobset_llm", "4")
