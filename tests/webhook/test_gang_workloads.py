"""Rule 3, sizes from the owning workload: Job, JobSet, PyTorchJob, LeaderWorkerSet, RayCluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhook.helpers import NS, PLUGINS_LABEL, gang, gpu_pod, obj, owner_ref, run
from webhook.owners import DictOwners

GROUP = PLUGINS_LABEL
SIZE = "gpuplace.io/gang-size"
GPU_TEMPLATE = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
CPU_TEMPLATE = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "2"}}}]}}


def job(name: str = "train", **spec: Any) -> dict[str, Any]:
    return obj("batch/v1", "Job", name, spec)


def indexed(n: int, **spec: Any) -> dict[str, Any]:
    """A JobSpec upstream gangs: Indexed, completions == parallelism == n, a GPU template."""
    return {"parallelism": n, "completions": n, "completionMode": "Indexed", "template": GPU_TEMPLATE, **spec}


def job_pod(name: str = "train", **kwargs: Any) -> dict[str, Any]:
    labels = {"batch.kubernetes.io/job-name": name, **kwargs.pop("labels", {})}
    return gpu_pod(owners=[owner_ref("Job", name)], labels=labels, **kwargs)


async def test_job_with_parallelism_is_a_gang_read_once_by_uid() -> None:
    owners = DictOwners([job(**indexed(4))])
    result = await run(job_pod(), owners=owners)
    assert gang(result) == ("job_train", "4")
    assert owners.calls == [("batch/v1", "Job", NS, "train")]


async def test_job_found_by_label_when_there_is_no_owner_reference() -> None:
    owners = DictOwners([job(**indexed(2))])
    assert gang(await run(gpu_pod(labels={"batch.kubernetes.io/job-name": "train"}), owners=owners)) == (
        "job_train",
        "2",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (indexed(4), "4"),
        (indexed(2), "2"),
        ({**indexed(4), "parallelism": None}, None),
        (indexed(1), None),
        (indexed(0), None),
        ({**indexed(4), "completionMode": "NonIndexed"}, None),
        ({**indexed(4), "completionMode": None}, None),
        ({**indexed(4), "completions": None}, None),
        ({**indexed(4), "completions": 8}, None),
        ({**indexed(4), "completions": 2}, None),
        (indexed(4, template={"spec": {**GPU_TEMPLATE["spec"], "schedulingGroup": {"podGroupName": "g"}}}), None),
        ({**indexed(4), "parallelism": "x"}, None),
        ({**indexed(4), "parallelism": True, "completions": True}, None),
    ],
    ids=[
        "indexed-4",
        "indexed-2",
        "nil-parallelism",
        "parallelism-1",
        "parallelism-0",
        "non-indexed",
        "no-completion-mode",
        "nil-completions",
        "work-queue",
        "completions-below-parallelism",
        "scheduling-group-set",
        "garbage",
        "booleans",
    ],
)
async def test_jobs_are_gangs_exactly_when_upstream_is_gang_scheduling_candidate_says_so(
    spec: dict[str, Any], expected: str | None
) -> None:
    """The cases of upstream's TestIsGangSchedulingCandidate (pkg/controller/job/util/utils_test.go, v1.36.3)."""
    result = await run(job_pod(), owners=DictOwners([job(**{k: v for k, v in spec.items() if v is not None})]))
    assert gang(result) == (("job_train", expected) if expected else (None, None))


async def test_a_recreated_job_with_another_uid_is_not_used() -> None:
    owners = DictOwners([obj("batch/v1", "Job", "train", indexed(4), uid="new-uid")])
    assert gang(await run(job_pod(), owners=owners)) == (None, None)


async def test_unreadable_owner_means_no_gang_and_no_denial() -> None:
    result = await run(job_pod(), owners=DictOwners())
    assert result.allowed and gang(result) == (None, None)


async def test_explicit_size_contradicting_the_job_is_denied() -> None:
    p = job_pod(annotations={SIZE: "16"})
    result = await run(p, owners=DictOwners([job(**indexed(8))]))
    assert result.message == (
        "contradictory sizes for gang 'job_train': annotation gpuplace.io/gang-size says 16, "
        "but Job team-a/train (Indexed, parallelism = completions = 8) says 8; make them agree"
    )


async def test_scheduler_plugins_label_names_the_gang_and_the_workload_sizes_it() -> None:
    result = await run(job_pod(labels={GROUP: "pg-train"}), owners=DictOwners([job(**indexed(2))]))
    assert gang(result) == ("pg-train", "2")


JOBSET = "jobset.x-k8s.io/v1alpha2"


def jobset(**spec: Any) -> dict[str, Any]:
    replicated = [
        {"name": "workers", "replicas": 2, "template": {"spec": indexed(4)}},
        {"name": "driver", "template": {"spec": {"template": GPU_TEMPLATE}}},
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
    owners = DictOwners([jobset(), job("llm-workers-0", **indexed(4))])
    result = await run(jobset_pod(), owners=owners)
    assert gang(result) == ("jobset_llm", "9")
    assert owners.calls == [(JOBSET, "JobSet", NS, "llm")]  # the child Job is only a part


@pytest.mark.parametrize(
    "spec", [{"startupPolicy": {"startupPolicyOrder": "InOrder"}}, {}], ids=["in-order", "depends-on"]
)
async def test_jobset_started_in_order_has_one_gang_per_replicated_job(spec: dict[str, Any]) -> None:
    js = jobset(**spec)
    if not spec:
        js["spec"]["replicatedJobs"][0]["dependsOn"] = [{"name": "driver", "status": "Ready"}]
    result = await run(jobset_pod(), owners=DictOwners([js]))
    assert gang(result) == ("jobset_llm_workers", "8")
    assert gang(await run(jobset_pod("driver"), owners=DictOwners([js]))) == (None, None)  # a gang of one


async def test_unreadable_jobset_does_not_fall_back_to_its_child_job() -> None:
    owners = DictOwners([job("llm-workers-0", **indexed(4))])
    assert gang(await run(jobset_pod(), owners=owners)) == (None, None)


async def test_jobset_with_a_work_queue_job_is_not_a_gang() -> None:
    js = jobset()
    js["spec"]["replicatedJobs"][1]["template"]["spec"] = {"parallelism": 2, "completions": 100, "template": GPU_TEMPLATE}
    assert gang(await run(jobset_pod(), owners=DictOwners([js]))) == (None, None)


def pytorchjob(**spec: Any) -> dict[str, Any]:
    replicas = {"Master": {"replicas": 1, "template": GPU_TEMPLATE}, "Worker": {"replicas": 3, "template": GPU_TEMPLATE}}
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
    assert gang(await run(p, owners=DictOwners([pytorchjob(**spec)]))) == ("pytorchjob_ddp", size)


async def test_pytorchjob_found_by_its_labels() -> None:
    assert gang(await run(gpu_pod(labels=PYTORCH_LABELS), owners=DictOwners([pytorchjob()]))) == (
        "pytorchjob_ddp",
        "4",
    )


async def test_other_training_operator_kinds_are_not_mistaken_for_pytorchjobs() -> None:
    labels = {**PYTORCH_LABELS, "training.kubeflow.org/operator-name": "mpijob-controller"}
    owners = DictOwners([pytorchjob()])
    assert gang(await run(gpu_pod(labels=labels), owners=owners)) == (None, None)
    assert owners.calls == []


LWS = "leaderworkerset.x-k8s.io/v1"


def lws_template(size: int, leader: dict[str, Any] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"size": size, "workerTemplate": GPU_TEMPLATE}
    if leader is not None:
        template["leaderTemplate"] = leader
    return template


def lws_pod(worker: str) -> dict[str, Any]:
    labels = {
        "leaderworkerset.sigs.k8s.io/name": "serve",
        "leaderworkerset.sigs.k8s.io/group-index": "2",
        "leaderworkerset.sigs.k8s.io/worker-index": worker,
    }
    return gpu_pod(labels=labels, annotations={"leaderworkerset.sigs.k8s.io/size": "4"})


@pytest.mark.parametrize("worker", ["0", "3"])
async def test_leaderworkerset_group_is_a_gang(worker: str) -> None:
    owners = DictOwners([obj(LWS, "LeaderWorkerSet", "serve", {"leaderWorkerTemplate": lws_template(4)})])
    assert gang(await run(lws_pod(worker), owners=owners)) == ("lws_serve_2", "4")


async def test_leaderworkerset_leader_ready_gangs_only_the_workers() -> None:
    owners = DictOwners(
        [
            obj(
                LWS,
                "LeaderWorkerSet",
                "serve",
                {"leaderWorkerTemplate": lws_template(4), "startupPolicy": "LeaderReady"},
            )
        ]
    )
    assert gang(await run(lws_pod("0"), owners=owners)) == (None, None)
    assert gang(await run(lws_pod("1"), owners=owners)) == ("lws_serve_2_workers", "3")


def ray_pod(node_type: str = "worker", group: str = "gpu") -> dict[str, Any]:
    labels = {"ray.io/cluster": "rc", "ray.io/group": group, "ray.io/node-type": node_type}
    return gpu_pod(labels=labels, owners=[owner_ref("RayCluster", "rc", api_version="ray.io/v1")])


def raycluster(**spec: Any) -> dict[str, Any]:
    groups = [{"groupName": "cpu", "replicas": 5}, {"groupName": "gpu", "replicas": 2, "numOfHosts": 2}]
    return obj("ray.io/v1", "RayCluster", "rc", {"workerGroupSpecs": groups, **spec})


async def test_raycluster_worker_group_is_a_gang() -> None:
    owners = DictOwners([raycluster()])
    assert gang(await run(ray_pod(), owners=owners)) == ("raycluster_rc_gpu", "4")


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
    owners = DictOwners([obj(LWS, "LeaderWorkerSet", name, {"leaderWorkerTemplate": lws_template(2)})])
    labels = {"leaderworkerset.sigs.k8s.io/name": name, "leaderworkerset.sigs.k8s.io/group-index": "100"}
    label, size = gang(await run(gpu_pod(labels=labels), owners=owners))
    assert size == "2" and label is not None and len(label) <= 63 and label.startswith("lws_" + "x" * 48 + "-")


async def test_gang_names_are_unique_per_owner() -> None:
    """Job `train` and PyTorchJob `train` in one namespace are two gangs; so are JobSet `a` started in
    order with replicatedJob `b`, Job `a-b` and JobSet `a-b`."""
    pytorch = obj(
        "kubeflow.org/v1",
        "PyTorchJob",
        "train",
        {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": GPU_TEMPLATE}}},
    )
    owners = DictOwners([job("train", **indexed(2)), pytorch, job("a-b", **indexed(2))])
    as_job = gang(await run(job_pod("train"), owners=owners))[0]
    pytorch_pod = gpu_pod(owners=[owner_ref("PyTorchJob", "train", api_version="kubeflow.org/v1")])
    as_pytorch = gang(await run(pytorch_pod, owners=owners))[0]

    in_order = {"startupPolicy": {"startupPolicyOrder": "InOrder"}, "replicatedJobs": [{"name": "b", "replicas": 2, "template": {"spec": {"template": GPU_TEMPLATE}}}]}
    owners.add(obj(JOBSET, "JobSet", "a", in_order))
    owners.add(obj(JOBSET, "JobSet", "a-b", {"replicatedJobs": in_order["replicatedJobs"]}))
    jobset_a = gpu_pod(labels={"jobset.sigs.k8s.io/jobset-name": "a", "jobset.sigs.k8s.io/replicatedjob-name": "b"})
    jobset_ab = gpu_pod(labels={"jobset.sigs.k8s.io/jobset-name": "a-b", "jobset.sigs.k8s.io/replicatedjob-name": "b"})
    names = [
        as_job,
        as_pytorch,
        gang(await run(jobset_a, owners=owners))[0],
        gang(await run(job_pod("a-b"), owners=owners))[0],
        gang(await run(jobset_ab, owners=owners))[0],
    ]
    assert None not in names and len(set(names)) == len(names), names
    assert names == ["job_train", "pytorchjob_train", "jobset_a_b", "job_a-b", "jobset_a-b"]
