"""Rule 3 with KubeOwners' cache: a re-created or resized owner is never sized from a stale cached copy.

The cache TTL is frozen (a fake clock that never moves), so every answer below that reflects the new
object came from the pod telling gpuplace the cached copy is outdated, not from an expiry.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes_asyncio.client import ApiClient

from tests.webhook.fakeapi import Clock, FakeApiserver
from tests.webhook.helpers import NS, gang, gpu_pod, obj, owner_ref, run
from webhook.owners import DictOwners, KubeOwners

GPU_TEMPLATE = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
JOBSET_PATH = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets/llm"
LWS_PATH = f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{NS}/leaderworkersets/serve"
JOB_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs/train"


def reader(client: ApiClient) -> KubeOwners:
    return KubeOwners(api_client=client, clock=Clock(), ttl_seconds=3600)


def jobset(uid: str, workers: int) -> dict[str, Any]:
    spec = {"parallelism": 2, "completions": 2, "completionMode": "Indexed", "template": GPU_TEMPLATE}
    rjobs = [{"name": "workers", "replicas": workers, "template": {"spec": spec}}]
    return obj("jobset.x-k8s.io/v1alpha2", "JobSet", "llm", {"replicatedJobs": rjobs}, uid=uid)


def jobset_pod(uid: str, workers: int) -> dict[str, Any]:
    labels = {
        "jobset.sigs.k8s.io/jobset-name": "llm",
        "jobset.sigs.k8s.io/jobset-uid": uid,
        "jobset.sigs.k8s.io/replicatedjob-name": "workers",
        "jobset.sigs.k8s.io/replicatedjob-replicas": str(workers),
    }
    return gpu_pod(labels=labels, owners=[owner_ref("Job", "llm-workers-0")])


async def test_a_recreated_jobset_is_read_again(apiserver: Any, client: ApiClient) -> None:
    fake: FakeApiserver = apiserver[0]
    owners = reader(client)
    fake.objects[JOBSET_PATH] = jobset("u1", 2)
    assert gang(await run(jobset_pod("u1", 2), owners=owners)) == ("jobset_llm", "4")
    fake.objects[JOBSET_PATH] = jobset("u2", 4)  # deleted and created again under the same name
    assert gang(await run(jobset_pod("u2", 4), owners=owners)) == ("jobset_llm", "8")
    assert fake.paths == [JOBSET_PATH, JOBSET_PATH]


async def test_a_resized_jobset_is_read_again_and_an_unchanged_one_is_not(apiserver: Any, client: ApiClient) -> None:
    fake: FakeApiserver = apiserver[0]
    owners = reader(client)
    fake.objects[JOBSET_PATH] = jobset("u1", 2)
    assert gang(await run(jobset_pod("u1", 2), owners=owners)) == ("jobset_llm", "4")
    assert gang(await run(jobset_pod("u1", 2), owners=owners)) == ("jobset_llm", "4")
    assert len(fake.paths) == 1  # the cache serves siblings
    fake.objects[JOBSET_PATH] = jobset("u1", 3)  # same object, more replicas (its pods say 3)
    assert gang(await run(jobset_pod("u1", 3), owners=owners)) == ("jobset_llm", "6")
    assert len(fake.paths) == 2


def lws(size: int) -> dict[str, Any]:
    template = {"size": size, "workerTemplate": GPU_TEMPLATE}
    return obj("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": template})


def lws_pod(size: int) -> dict[str, Any]:
    labels = {
        "leaderworkerset.sigs.k8s.io/name": "serve",
        "leaderworkerset.sigs.k8s.io/group-index": "0",
        "leaderworkerset.sigs.k8s.io/worker-index": "1",
    }
    return gpu_pod(labels=labels, annotations={"leaderworkerset.sigs.k8s.io/size": str(size)})


async def test_a_resized_leaderworkerset_is_read_again(apiserver: Any, client: ApiClient) -> None:
    fake: FakeApiserver = apiserver[0]
    owners = reader(client)
    fake.objects[LWS_PATH] = lws(4)
    assert gang(await run(lws_pod(4), owners=owners)) == ("lws_serve_0", "4")
    fake.objects[LWS_PATH] = lws(8)
    assert gang(await run(lws_pod(8), owners=owners)) == ("lws_serve_0", "8")
    assert len(fake.paths) == 2


def job(n: int) -> dict[str, Any]:
    spec = {"parallelism": n, "completions": n, "completionMode": "Indexed", "template": GPU_TEMPLATE}
    return obj("batch/v1", "Job", "train", spec, uid="u1")


def job_pod(index: int) -> dict[str, Any]:
    return gpu_pod(
        owners=[owner_ref("Job", "train", uid="u1")],
        annotations={"batch.kubernetes.io/job-completion-index": str(index)},
    )


async def test_a_job_scaled_up_is_read_again_when_a_pod_has_an_index_the_cached_job_lacks(
    apiserver: Any, client: ApiClient
) -> None:
    fake: FakeApiserver = apiserver[0]
    owners = reader(client)
    fake.objects[JOB_PATH] = job(2)
    assert gang(await run(job_pod(1), owners=owners)) == ("job_train", "2")
    fake.objects[JOB_PATH] = job(4)  # an elastic Indexed Job: completions and parallelism raised together
    assert gang(await run(job_pod(3), owners=owners)) == ("job_train", "4")
    assert len(fake.paths) == 2


async def test_reinvocation_over_a_refreshed_cache_replaces_the_size_without_a_denial(
    apiserver: Any, client: ApiClient
) -> None:
    fake: FakeApiserver = apiserver[0]
    owners = reader(client)
    fake.objects[JOBSET_PATH] = jobset("u1", 2)
    first = await run(jobset_pod("u1", 2), owners=owners)
    fake.objects[JOBSET_PATH] = jobset("u1", 3)
    await owners.get_owner("jobset.x-k8s.io/v1alpha2", "JobSet", NS, "llm", refresh=True)
    again = copy.deepcopy(first.pod)
    second = await run(again, owners=owners)
    assert second.allowed, second.message
    assert gang(second) == ("jobset_llm", "6")


class StaleOwners(DictOwners):
    """Serves `stale` objects like an unexpired cache would, and the current ones only on refresh=True."""

    def __init__(self, stale: list[dict[str, Any]], current: list[dict[str, Any]]) -> None:
        super().__init__(current)
        self.stale = DictOwners(stale)

    async def get_owner(self, api_version: str, kind: str, namespace: str, name: str, **kwargs: Any) -> Any:
        if kwargs.get("refresh"):
            return await super().get_owner(api_version, kind, namespace, name, **kwargs)
        self.calls.append((api_version, kind, namespace, name))
        return await self.stale.get_owner(api_version, kind, namespace, name, **kwargs)


def pytorchjob(workers: int) -> dict[str, Any]:
    specs = {"Worker": {"replicas": workers, "template": GPU_TEMPLATE}}
    return obj("kubeflow.org/v1", "PyTorchJob", "ddp", {"pytorchReplicaSpecs": specs})


def pytorch_pod(index: int) -> dict[str, Any]:
    labels = {"training.kubeflow.org/replica-type": "worker", "training.kubeflow.org/replica-index": str(index)}
    return gpu_pod(labels=labels, owners=[owner_ref("PyTorchJob", "ddp", api_version="kubeflow.org/v1")])


async def test_a_pytorchjob_scaled_up_is_read_again_when_a_pod_has_a_replica_index_the_cached_spec_lacks() -> None:
    owners = StaleOwners([pytorchjob(2)], [pytorchjob(4)])
    assert gang(await run(pytorch_pod(1), owners=owners)) == ("pytorchjob_ddp", "2")  # nothing says it changed
    assert owners.refreshes == []
    assert gang(await run(pytorch_pod(3), owners=owners)) == ("pytorchjob_ddp", "4")
    assert len(owners.refreshes) == 1


async def test_a_jobset_pod_without_its_replicated_job_label_does_not_force_a_read_each_time() -> None:
    owners = StaleOwners([jobset("u1", 2)], [jobset("u1", 2)])
    p = jobset_pod("u1", 2)
    del p["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"]
    assert gang(await run(p, owners=owners)) == ("jobset_llm", "4")
    assert owners.refreshes == []
