"""Rule 3, sizes from the owning workload: Job, JobSet, PyTorchJob, LeaderWorkerSet, RayCluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhook.helpers import NS, gpu_pod, obj, owner_ref, run
from webhook.owners import DictOwners

GROUP = "scheduling.x-k8s.io/pod-group"
SIZE = "gpuplace.io/gang-size"


def gang(result: Any) -> tuple[str | None, str | None]:
    meta = result.pod["metadata"]
    return meta.get("labels", {}).get(GROUP), meta.get("annotations", {}).get(SIZE)


def job(name: str = "train", **spec: Any) -> dict[str, Any]:
    return obj("batch/v1", "Job", name, spec)


def job_pod(name: str = "train", **kwargs: Any) -> dict[str, Any]:
    labels = {"batch.kubernetes.io/job-name": name, **kwargs.pop("labels", {})}
    return gpu_pod(owners=[owner_ref("Job", name)], labels=labels, **kwargs)


async def test_job_with_parallelism_is_a_gang_read_once_by_uid() -> None:
    owners = DictOwners([job(parallelism=4, completions=4)])
    result = await run(job_pod(), owners=owners)
    assert gang(result) == ("train", "4")
    assert owners.calls == [("batch/v1", "Job", NS, "train")]


async def test_job_found_by_label_when_there_is_no_owner_reference() -> None:
    owners = DictOwners([job(parallelism=2)])
    assert gang(await run(gpu_pod(labels={"batch.kubernetes.io/job-name": "train"}), owners=owners)) == (
        "train",
        "2",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"parallelism": 1}, None),
        ({}, None),
        ({"parallelism": 4, "completions": 10}, None),
        ({"parallelism": 4, "completions": 2}, "2"),
        ({"parallelism": 3}, "3"),
        ({"parallelism": "x"}, None),
    ],
    ids=["single", "defaults", "work-queue", "completions-cap", "no-completions", "garbage"],
)
async def test_job_shapes(spec: dict[str, Any], expected: str | None) -> None:
    result = await run(job_pod(), owners=DictOwners([job(**spec)]))
    assert gang(result) == (("train", expected) if expected else (None, None))


async def test_a_recreated_job_with_another_uid_is_not_used() -> None:
    owners = DictOwners([obj("batch/v1", "Job", "train", {"parallelism": 4}, uid="new-uid")])
    assert gang(await run(job_pod(), owners=owners)) == (None, None)


async def test_unreadable_owner_means_no_gang_and_no_denial() -> None:
    result = await run(job_pod(), owners=DictOwners())
    assert result.allowed and gang(result) == (None, None)


async def test_explicit_size_contradicting_the_job_is_denied() -> None:
    p = job_pod(annotations={SIZE: "16"})
    result = await run(p, owners=DictOwners([job(parallelism=8, completions=8)]))
    assert result.message == (
        "contradictory sizes for gang 'train': annotation gpuplace.io/gang-size says 16, "
        "but Job team-a/train (parallelism 8, completions 8) says 8; make them agree"
    )


async def test_existing_label_kept_and_sized_by_the_workload() -> None:
    result = await run(job_pod(labels={GROUP: "pg-train"}), owners=DictOwners([job(parallelism=2)]))
    assert gang(result) == ("pg-train", "2")


JOBSET = "jobset.x-k8s.io/v1alpha2"


def jobset(**spec: Any) -> dict[str, Any]:
    replicated = [
        {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 4, "completions": 4}}},
        {"name": "driver", "template": {"spec": {}}},
    ]
    return obj(JOBSET, "JobSet", "llm", {"replicatedJobs": replicated, **spec})


def jobset_pod(rjob: str = "workers") -> dict[str, Any]:
    labels = {
        "jobset.sigs.k8s.io/jobset-name": "llm",
        "jobset.sigs.k8s.io/replicatedjob-name": rjob,
        "batch.kubernetes.io/job-name": f"llm-{rjob}-0",
    }
    return gpu_pod(owners=[owner_ref("Job", f"llm-{rjob}-0")], labels=labels)


async def test_jobset_is_one_gang_over_all_replicated_jobs() -> None:
    owners = DictOwners([jobset(), job("llm-workers-0", parallelism=4, completions=4)])
    result = await run(jobset_pod(), owners=owners)
    assert gang(result) == ("llm", "9")
    assert owners.calls == [(JOBSET, "JobSet", NS, "llm")]  # the child Job is only a part


@pytest.mark.parametrize(
    "spec", [{"startupPolicy": {"startupPolicyOrder": "InOrder"}}, {}], ids=["in-order", "depends-on"]
)
async def test_jobset_started_in_order_has_one_gang_per_replicated_job(spec: dict[str, Any]) -> None:
    js = jobset(**spec)
    if not spec:
        js["spec"]["replicatedJobs"][0]["dependsOn"] = [{"name": "driver", "status": "Ready"}]
    result = await run(jobset_pod(), owners=DictOwners([js]))
    assert gang(result) == ("llm-workers", "8")
    assert gang(await run(jobset_pod("driver"), owners=DictOwners([js]))) == (None, None)  # a gang of one


async def test_unreadable_jobset_does_not_fall_back_to_its_child_job() -> None:
    owners = DictOwners([job("llm-workers-0", parallelism=4)])
    assert gang(await run(jobset_pod(), owners=owners)) == (None, None)


async def test_jobset_with_a_work_queue_job_is_not_a_gang() -> None:
    js = jobset()
    js["spec"]["replicatedJobs"][1]["template"]["spec"] = {"parallelism": 2, "completions": 100}
    assert gang(await run(jobset_pod(), owners=DictOwners([js]))) == (None, None)


def pytorchjob(**spec: Any) -> dict[str, Any]:
    replicas = {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}
    return obj("kubeflow.org/v1", "PyTorchJob", "ddp", {"pytorchReplicaSpecs": replicas, **spec})


PYTORCH_LABELS = {
    "training.kubeflow.org/job-name": "ddp",
    "training.kubeflow.org/replica-type": "worker",
    "training.kubeflow.org/operator-name": "pytorchjob-controller",
}


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({}, "4"),
        ({"runPolicy": {"schedulingPolicy": {"minAvailable": 2}}}, "2"),
        ({"elasticPolicy": {"minReplicas": 3, "maxReplicas": 8}}, "3"),
    ],
)
async def test_pytorchjob(spec: dict[str, Any], size: str) -> None:
    p = gpu_pod(owners=[owner_ref("PyTorchJob", "ddp", api_version="kubeflow.org/v1")], labels=PYTORCH_LABELS)
    assert gang(await run(p, owners=DictOwners([pytorchjob(**spec)]))) == ("ddp", size)


async def test_pytorchjob_found_by_its_labels() -> None:
    assert gang(await run(gpu_pod(labels=PYTORCH_LABELS), owners=DictOwners([pytorchjob()]))) == ("ddp", "4")


async def test_other_training_operator_kinds_are_not_mistaken_for_pytorchjobs() -> None:
    labels = {**PYTORCH_LABELS, "training.kubeflow.org/operator-name": "mpijob-controller"}
    owners = DictOwners([pytorchjob()])
    assert gang(await run(gpu_pod(labels=labels), owners=owners)) == (None, None)
    assert owners.calls == []


LWS = "leaderworkerset.x-k8s.io/v1"


def lws_pod(worker: str) -> dict[str, Any]:
    labels = {
        "leaderworkerset.sigs.k8s.io/name": "serve",
        "leaderworkerset.sigs.k8s.io/group-index": "2",
        "leaderworkerset.sigs.k8s.io/worker-index": worker,
    }
    return gpu_pod(labels=labels, annotations={"leaderworkerset.sigs.k8s.io/size": "4"})


@pytest.mark.parametrize("worker", ["0", "3"])
async def test_leaderworkerset_group_is_a_gang(worker: str) -> None:
    owners = DictOwners([obj(LWS, "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": {"size": 4}})])
    assert gang(await run(lws_pod(worker), owners=owners)) == ("serve-2", "4")


async def test_leaderworkerset_leader_ready_gangs_only_the_workers() -> None:
    owners = DictOwners(
        [
            obj(
                LWS,
                "LeaderWorkerSet",
                "serve",
                {"leaderWorkerTemplate": {"size": 4}, "startupPolicy": "LeaderReady"},
            )
        ]
    )
    assert gang(await run(lws_pod("0"), owners=owners)) == (None, None)
    assert gang(await run(lws_pod("1"), owners=owners)) == ("serve-2-workers", "3")


def ray_pod(node_type: str = "worker", group: str = "gpu") -> dict[str, Any]:
    labels = {"ray.io/cluster": "rc", "ray.io/group": group, "ray.io/node-type": node_type}
    return gpu_pod(labels=labels, owners=[owner_ref("RayCluster", "rc", api_version="ray.io/v1")])


def raycluster(**spec: Any) -> dict[str, Any]:
    groups = [{"groupName": "cpu", "replicas": 5}, {"groupName": "gpu", "replicas": 2, "numOfHosts": 2}]
    return obj("ray.io/v1", "RayCluster", "rc", {"workerGroupSpecs": groups, **spec})


async def test_raycluster_worker_group_is_a_gang() -> None:
    owners = DictOwners([raycluster()])
    assert gang(await run(ray_pod(), owners=owners)) == ("rc-gpu", "4")


@pytest.mark.parametrize(
    ("p", "spec"),
    [
        (ray_pod("head", "headgroup"), {}),
        (ray_pod(), {"enableInTreeAutoscaling": True}),
        (ray_pod(group="tpu"), {}),
    ],
    ids=["head", "autoscaling", "unknown-group"],
)
async def test_raycluster_cases_without_a_gang(p: dict[str, Any], spec: dict[str, Any]) -> None:
    assert gang(await run(p, owners=DictOwners([raycluster(**spec)]))) == (None, None)


async def test_long_workload_names_are_shortened_to_label_values() -> None:
    name = "x" * 60
    owners = DictOwners([obj(LWS, "LeaderWorkerSet", name, {"leaderWorkerTemplate": {"size": 2}})])
    labels = {"leaderworkerset.sigs.k8s.io/name": name, "leaderworkerset.sigs.k8s.io/group-index": "100"}
    label, size = gang(await run(gpu_pod(labels=labels), owners=owners))
    assert size == "2" and label is not None and len(label) <= 63 and label.startswith("x" * 52 + "-")
