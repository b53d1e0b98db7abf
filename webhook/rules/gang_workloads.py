"""Gang claims derived from the workload that owns a pod: Job, JobSet, PyTorchJob, LeaderWorkerSet, RayCluster.

Why from the owner object: a pod alone does not say how many siblings it has. Each controller stamps
labels on its pods that name the owner; the owner's spec gives the size. The labels read (all set by
the controllers themselves, verified against their sources):

| workload | pod labels / references used | size |
|---|---|---|
| JobSet (jobset.x-k8s.io/v1alpha2) | `jobset.sigs.k8s.io/jobset-name`, `jobset.sigs.k8s.io/replicatedjob-name` | Σ replicas × pods per Job |
| Job (batch/v1) | controller ownerReference kind Job, else `batch.kubernetes.io/job-name` / `job-name` | parallelism |
| PyTorchJob (kubeflow.org/v1) | controller ownerReference, else `training.kubeflow.org/job-name` with `training.kubeflow.org/operator-name=pytorchjob-controller` | minAvailable, elastic minReplicas, or Σ replicas |
| LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) | `leaderworkerset.sigs.k8s.io/name`, `.../group-index`, `.../worker-index` | leaderWorkerTemplate.size, per group |
| RayCluster (ray.io/v1) | `ray.io/cluster`, `ray.io/group`, `ray.io/node-type`; ownerReference uid | worker group replicas × numOfHosts |

A JobSet's pods are also Job pods: the JobSet is checked first and, if the pod has its label, decides
alone (a child Job's parallelism is only part of the gang). A gang is only claimed where it can complete:
never for work-queue Jobs (completions > parallelism: replacements arrive one at a time), JobSets started
in order (one gang per replicatedJob instead), LWS LeaderReady (the leader starts alone; its workers form
the gang), autoscaled Ray clusters (size changes), or head pods. An unreadable owner means no claim.
"""

from __future__ import annotations

from typing import Any

from webhook.owners import Owners
from webhook.rules.gang_declared import Claim, to_label_value

JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
PYTORCH_JOB_NAME = "training.kubeflow.org/job-name"
PYTORCH_OPERATOR = "training.kubeflow.org/operator-name"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
RAY_CLUSTER = "ray.io/cluster"
RAY_GROUP = "ray.io/group"
RAY_NODE_TYPE = "ray.io/node-type"


async def workload_claim(
    pod: dict[str, Any], labels: dict[str, str], *, namespace: str, owners: Owners
) -> Claim | None:
    """The claim of the workload owning this pod, if it is a gang of two or more pods."""
    if labels.get(JOBSET_NAME):
        return await _jobset(labels, namespace, owners)
    if ref := _reference(pod, labels, "batch", "Job", JOB_NAME_LABELS):
        return await _job(ref, namespace, owners)
    if ref := _reference(pod, labels, "kubeflow.org", "PyTorchJob", ()) or _pytorch_label(labels):
        return await _pytorchjob(ref, namespace, owners)
    if labels.get(LWS_NAME) and labels.get(LWS_GROUP_INDEX) is not None:
        return await _leaderworkerset(labels, namespace, owners)
    if labels.get(RAY_CLUSTER) and labels.get(RAY_GROUP) and labels.get(RAY_NODE_TYPE) != "head":
        ref = _reference(pod, {}, "ray.io", "RayCluster", ())
        return await _raycluster(labels, ref[1] if ref else None, namespace, owners)
    return None


def _reference(
    pod: dict[str, Any], labels: dict[str, str], group: str, kind: str, label_keys: tuple[str, ...]
) -> tuple[str, str | None] | None:
    """(name, uid) of the pod's controller of this kind, else (name from a label, None)."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, dict) or not ref.get("controller") or ref.get("kind") != kind:
            continue
        ref_group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if ref_group == group and isinstance(ref.get("name"), str):
            uid = ref.get("uid")
            return ref["name"], uid if isinstance(uid, str) and uid else None
    for key in label_keys:
        if labels.get(key):
            return labels[key], None
    return None


def _pytorch_label(labels: dict[str, str]) -> tuple[str, None] | None:
    if labels.get(PYTORCH_OPERATOR) == "pytorchjob-controller" and labels.get(PYTORCH_JOB_NAME):
        return labels[PYTORCH_JOB_NAME], None
    return None


def _get(obj: object, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _count(value: object, default: int) -> int | None:
    """A non-negative integer field, the default when absent, None when it is not an integer."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def pods_per_job(job_spec: object) -> int | None:
    """How many pods of a Job run at once, or None when the Job is not gang-shaped.

    parallelism (default 1), capped by completions; a Job needing more completions than it runs in
    parallel is a work queue whose later pods start alone, so it is not a gang.
    """
    parallelism = _count(_get(job_spec, "parallelism"), 1)
    completions = _get(job_spec, "completions")
    if parallelism is None or (completions is not None and _count(completions, 0) is None):
        return None
    if completions is None:
        return parallelism
    return None if completions > parallelism else completions


def _gang(source: str, name: str, size: int | None) -> Claim | None:
    return Claim(source, to_label_value(name), size) if size is not None and size >= 2 else None


async def _job(ref: tuple[str, str | None], namespace: str, owners: Owners) -> Claim | None:
    name, uid = ref
    job = await owners.get_job(namespace, name, uid=uid)
    spec = _get(job, "spec")
    size = pods_per_job(spec)
    detail = f"parallelism {_get(spec, 'parallelism')}, completions {_get(spec, 'completions')}"
    return _gang(f"Job {namespace}/{name} ({detail})", name, size)


async def _jobset(labels: dict[str, str], namespace: str, owners: Owners) -> Claim | None:
    name = labels[JOBSET_NAME]
    jobset = await owners.get_owner("jobset.x-k8s.io/v1alpha2", "JobSet", namespace, name)
    replicated = _get(jobset, "spec", "replicatedJobs")
    if not isinstance(replicated, list) or not replicated:
        return None
    sizes: dict[str, tuple[int, int]] = {}
    for rjob in replicated:
        replicas, width = _count(_get(rjob, "replicas"), 1), pods_per_job(_get(rjob, "template", "spec"))
        if replicas is None or width is None or not isinstance(_get(rjob, "name"), str):
            return None
        sizes[rjob["name"]] = (replicas, width)
    in_order = _get(jobset, "spec", "startupPolicy", "startupPolicyOrder") == "InOrder" or any(
        _get(rjob, "dependsOn") for rjob in replicated
    )
    if in_order:
        rjob_name = labels.get(JOBSET_REPLICATED_JOB, "")
        if rjob_name not in sizes:
            return None
        replicas, width = sizes[rjob_name]
        source = f"JobSet {namespace}/{name} (started in order; replicatedJob {rjob_name} {replicas}×{width})"
        return _gang(source, f"{name}-{rjob_name}", replicas * width)
    detail = ", ".join(f"{rjob} {replicas}×{width}" for rjob, (replicas, width) in sizes.items())
    total = sum(replicas * width for replicas, width in sizes.values())
    return _gang(f"JobSet {namespace}/{name} (replicatedJobs {detail})", name, total)


async def _pytorchjob(ref: tuple[str, str | None], namespace: str, owners: Owners) -> Claim | None:
    name, uid = ref
    job = await owners.get_owner("kubeflow.org/v1", "PyTorchJob", namespace, name, uid=uid)
    spec = _get(job, "spec")
    min_available = _get(spec, "runPolicy", "schedulingPolicy", "minAvailable")
    min_replicas = _get(spec, "elasticPolicy", "minReplicas")
    replica_specs = _get(spec, "pytorchReplicaSpecs")
    if isinstance(min_available, int) and min_available > 0:
        size, detail = min_available, f"runPolicy.schedulingPolicy.minAvailable {min_available}"
    elif isinstance(min_replicas, int) and min_replicas > 0:
        size, detail = min_replicas, f"elasticPolicy.minReplicas {min_replicas}"
    elif isinstance(replica_specs, dict) and replica_specs:
        counts = {rtype: _count(_get(rspec, "replicas"), 1) for rtype, rspec in replica_specs.items()}
        if any(count is None for count in counts.values()):
            return None
        size = sum(count or 0 for count in counts.values())
        detail = " + ".join(f"{rtype} {count}" for rtype, count in counts.items())
    else:
        return None
    return _gang(f"PyTorchJob {namespace}/{name} ({detail})", name, size)


async def _leaderworkerset(labels: dict[str, str], namespace: str, owners: Owners) -> Claim | None:
    name, group = labels[LWS_NAME], labels[LWS_GROUP_INDEX]
    lws = await owners.get_owner("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", namespace, name)
    if lws is None:
        return None
    size = _count(_get(lws, "spec", "leaderWorkerTemplate", "size"), 1)
    if size is None:
        return None
    source = f"LeaderWorkerSet {namespace}/{name} (leaderWorkerTemplate.size {size}"
    if _get(lws, "spec", "startupPolicy") == "LeaderReady":
        if labels.get(LWS_WORKER_INDEX, "0") == "0":
            return None
        return _gang(f"{source}, LeaderReady: workers only)", f"{name}-{group}-workers", size - 1)
    return _gang(f"{source})", f"{name}-{group}", size)


async def _raycluster(
    labels: dict[str, str], uid: str | None, namespace: str, owners: Owners
) -> Claim | None:
    cluster, group = labels[RAY_CLUSTER], labels[RAY_GROUP]
    raycluster = await owners.get_owner("ray.io/v1", "RayCluster", namespace, cluster, uid=uid)
    if raycluster is None or _get(raycluster, "spec", "enableInTreeAutoscaling") is True:
        return None
    groups = _get(raycluster, "spec", "workerGroupSpecs")
    for spec in groups if isinstance(groups, list) else []:
        if _get(spec, "groupName") != group or _get(spec, "suspended") is True:
            continue
        replicas, hosts = _count(_get(spec, "replicas"), 0), _count(_get(spec, "numOfHosts"), 1)
        if replicas is None or hosts is None:
            return None
        source = f"RayCluster {namespace}/{cluster} (workerGroup {group}: replicas {replicas} × numOfHosts {hosts})"
        return _gang(source, f"{cluster}-{group}", replicas * hosts)
    return None
