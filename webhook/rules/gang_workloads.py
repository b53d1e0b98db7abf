"""Gang claims derived from the workload that owns a pod: Job, JobSet, PyTorchJob, LeaderWorkerSet, RayCluster.

Why from the owner object: a pod alone does not say how many siblings it has. Each controller stamps
labels on its pods that name the owner; the owner's spec gives the size. The labels read (all set by
the controllers themselves):

| workload | pod labels / references used | size (GPU members only, `gang_shapes`) | name |
|---|---|---|---|
| JobSet (jobset.x-k8s.io/v1alpha2) | `jobset.sigs.k8s.io/jobset-name`, `-uid`, `replicatedjob-name`, `replicatedjob-replicas` | Σ over GPU replicatedJobs of replicas × pods per Job | `jobset_<js>` |
| Job (batch/v1) | controller ownerReference kind Job, else `batch.kubernetes.io/job-name` / `job-name` | parallelism, for upstream gang candidates only | `job_<job>` |
| PyTorchJob (kubeflow.org/v1) | controller ownerReference, else `training.kubeflow.org/job-name` with `training.kubeflow.org/operator-name=pytorchjob-controller` | GPU replicas, or minAvailable / elastic minReplicas less the CPU replicas | `pytorchjob_<job>` |
| LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) | `leaderworkerset.sigs.k8s.io/name`, `.../group-index`, `.../worker-index`, annotation `.../size` | group size, without a CPU leader | `lws_<lws>_<group>` |
| RayCluster (ray.io/v1) | `ray.io/cluster`, `ray.io/group`, `ray.io/node-type`; ownerReference uid | worker group replicas × numOfHosts | `raycluster_<rc>_<group>` |

A JobSet's pods are also Job pods: the JobSet is checked first and, if the pod has its label, decides
alone (a child Job's parallelism is only part of the gang). A gang is only claimed where it can complete:
never for Jobs upstream does not gang (`gang_shapes.is_gang_scheduling_candidate`), JobSets started in
order (one gang per replicatedJob instead), LWS LeaderReady (the leader starts alone; its workers form the
gang), autoscaled Ray clusters (size changes), or head pods. An unreadable owner means no claim.

Freshness: every read passes the owner's UID when the pod carries it (ownerReference, JobSet's uid
label), so a re-created owner is never served from the cache. When the pod shows its owner is newer than
the cached copy (a JobSet replicas label, an LWS size annotation or a completion/replica index the cached
spec does not have), the owner is read again (`refresh=True`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from webhook.owners import Object, Owners
from webhook.rules.gang_declared import Claim
from webhook.rules.gang_shapes import (
    count,
    gang_name,
    get,
    is_gang_scheduling_candidate,
    job_width,
    requests_managed,
)
from webhook.settings import WebhookSettings

JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_UID = "jobset.sigs.k8s.io/jobset-uid"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOBSET_REPLICATED_JOB_REPLICAS = "jobset.sigs.k8s.io/replicatedjob-replicas"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
PYTORCH_JOB_NAME = "training.kubeflow.org/job-name"
PYTORCH_OPERATOR = "training.kubeflow.org/operator-name"
PYTORCH_REPLICA_TYPE = "training.kubeflow.org/replica-type"
PYTORCH_REPLICA_INDEX = "training.kubeflow.org/replica-index"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_SIZE = "leaderworkerset.sigs.k8s.io/size"
RAY_CLUSTER = "ray.io/cluster"
RAY_GROUP = "ray.io/group"
RAY_NODE_TYPE = "ray.io/node-type"

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
PYTORCH_API = "kubeflow.org/v1"
LWS_API = "leaderworkerset.x-k8s.io/v1"
RAY_API = "ray.io/v1"


def workload_claim(
    pod: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    *,
    namespace: str,
    owners: Owners,
    settings: WebhookSettings,
) -> Coroutine[Any, Any, Claim | None] | None:
    """The read that gives the claim of the workload owning this pod (a gang of two or more GPU pods, or
    None), or None when the pod names no workload: nothing to read."""
    if labels.get(JOBSET_NAME):
        return _jobset(labels, namespace, owners, settings)
    if ref := _reference(pod, labels, "batch", "Job", JOB_NAME_LABELS):
        return _job(ref, labels, annotations, namespace, owners)
    if ref := _reference(pod, labels, "kubeflow.org", "PyTorchJob", ()) or _pytorch_label(labels):
        return _pytorchjob(ref, labels, namespace, owners, settings)
    if labels.get(LWS_NAME) and labels.get(LWS_GROUP_INDEX) is not None:
        return _leaderworkerset(labels, annotations, namespace, owners, settings)
    if labels.get(RAY_CLUSTER) and labels.get(RAY_GROUP) and labels.get(RAY_NODE_TYPE) != "head":
        ref = _reference(pod, {}, "ray.io", "RayCluster", ())
        return _raycluster(labels, ref[1] if ref else None, namespace, owners)
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


def _index(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdecimal() else None


async def _read(
    owners: Owners,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    uid: str | None,
    outdated: Any,
) -> Object | None:
    """The owner, read again when `outdated(obj)` says the pod has seen a newer version than the cache."""
    obj = await owners.get_owner(api_version, kind, namespace, name, uid=uid)
    if obj is not None and outdated(obj):
        obj = await owners.get_owner(api_version, kind, namespace, name, uid=uid, refresh=True)
    return obj


def _gang(source: str, name: str, size: int | None) -> Claim | None:
    return Claim(source, name, size) if size is not None and size >= 2 else None


async def _job(
    ref: tuple[str, str | None], labels: dict[str, str], annotations: dict[str, str], namespace: str, owners: Owners
) -> Claim | None:
    name, uid = ref
    index = _index(annotations.get(JOB_COMPLETION_INDEX) or labels.get(JOB_COMPLETION_INDEX))

    def outdated(job: Object) -> bool:
        completions = get(job, "spec", "completions")
        return index is not None and isinstance(completions, int) and index >= completions

    job = await _read(owners, "batch/v1", "Job", namespace, name, uid, outdated)
    spec = get(job, "spec")
    if not is_gang_scheduling_candidate(spec):
        return None
    size: int = spec["parallelism"]
    return _gang(f"Job {namespace}/{name} (Indexed, parallelism = completions = {size})", gang_name("job", name), size)


async def _jobset(labels: dict[str, str], namespace: str, owners: Owners, settings: WebhookSettings) -> Claim | None:
    name, own_rjob = labels[JOBSET_NAME], labels.get(JOBSET_REPLICATED_JOB, "")
    own_replicas = _index(labels.get(JOBSET_REPLICATED_JOB_REPLICAS))

    def outdated(jobset: Object) -> bool:
        rjobs = get(jobset, "spec", "replicatedJobs")
        mine = [r for r in rjobs if get(r, "name") == own_rjob] if isinstance(rjobs, list) else []
        if not own_rjob:
            return False
        return not mine or (own_replicas is not None and count(get(mine[0], "replicas"), 1) != own_replicas)

    jobset = await _read(owners, JOBSET_API, "JobSet", namespace, name, labels.get(JOBSET_UID) or None, outdated)
    replicated = get(jobset, "spec", "replicatedJobs")
    if not isinstance(replicated, list) or not replicated:
        return None
    sizes: dict[str, tuple[int, int]] = {}
    without_gpus: list[str] = []
    for rjob in replicated:
        rjob_name = get(rjob, "name")
        if not isinstance(rjob_name, str):
            return None
        if not requests_managed(get(rjob, "template", "spec", "template", "spec"), settings):
            without_gpus.append(rjob_name)
            continue
        replicas, width = count(get(rjob, "replicas"), 1), job_width(get(rjob, "template", "spec"))
        if replicas is None or width is None:
            return None
        sizes[rjob_name] = (replicas, width)
    in_order = get(jobset, "spec", "startupPolicy", "startupPolicyOrder") == "InOrder" or any(
        get(rjob, "dependsOn") for rjob in replicated
    )
    if in_order:
        if own_rjob not in sizes:
            return None
        replicas, width = sizes[own_rjob]
        source = f"JobSet {namespace}/{name} (started in order; replicatedJob {own_rjob} {replicas}×{width})"
        return _gang(source, gang_name("jobset", name, own_rjob), replicas * width)
    detail = ", ".join(f"{rjob} {replicas}×{width}" for rjob, (replicas, width) in sizes.items())
    if without_gpus:
        detail += f"; without GPUs, not counted: {', '.join(without_gpus)}"
    total = sum(replicas * width for replicas, width in sizes.values())
    return _gang(f"JobSet {namespace}/{name} (replicatedJobs {detail})", gang_name("jobset", name), total)


async def _pytorchjob(
    ref: tuple[str, str | None], labels: dict[str, str], namespace: str, owners: Owners, settings: WebhookSettings
) -> Claim | None:
    name, uid = ref
    own_type, own_index = labels.get(PYTORCH_REPLICA_TYPE, "").lower(), _index(labels.get(PYTORCH_REPLICA_INDEX))

    def outdated(job: Object) -> bool:
        specs = get(job, "spec", "pytorchReplicaSpecs")
        mine = [s for t, s in specs.items() if str(t).lower() == own_type] if isinstance(specs, dict) else []
        replicas = count(get(mine[0], "replicas"), 1) if mine else None
        return own_index is not None and (replicas is None or own_index >= replicas)

    job = await _read(owners, PYTORCH_API, "PyTorchJob", namespace, name, uid, outdated)
    spec = get(job, "spec")
    replica_specs = get(spec, "pytorchReplicaSpecs")
    if not isinstance(replica_specs, dict) or not replica_specs:
        return None
    gpu: dict[str, int] = {}
    cpu: dict[str, int] = {}
    for rtype, rspec in replica_specs.items():
        replicas = count(get(rspec, "replicas"), 1)
        if replicas is None:
            return None
        (gpu if requests_managed(get(rspec, "template", "spec"), settings) else cpu)[str(rtype)] = replicas
    detail = " + ".join(f"{rtype} {n}" for rtype, n in gpu.items()) or "no replica type with GPUs"
    if cpu:
        detail += f"; without GPUs, not counted: {' + '.join(f'{rtype} {n}' for rtype, n in cpu.items())}"
    size = sum(gpu.values())
    for field, minimum in (
        ("runPolicy.schedulingPolicy.minAvailable", get(spec, "runPolicy", "schedulingPolicy", "minAvailable")),
        ("elasticPolicy.minReplicas", get(spec, "elasticPolicy", "minReplicas")),
    ):
        if isinstance(minimum, int) and not isinstance(minimum, bool) and minimum > 0:
            # The minimum counts pods of every replica type; CPU pods never reach gpuplace, and at most
            # all of them count towards it, so the GPU pods needed are the minimum less the CPU pods.
            size = min(size, max(0, minimum - sum(cpu.values())))
            detail = f"{field} {minimum}; {detail}"
            break
    return _gang(f"PyTorchJob {namespace}/{name} ({detail})", gang_name("pytorchjob", name), size)


async def _leaderworkerset(
    labels: dict[str, str], annotations: dict[str, str], namespace: str, owners: Owners, settings: WebhookSettings
) -> Claim | None:
    name, group = labels[LWS_NAME], labels[LWS_GROUP_INDEX]
    own_size = _index(annotations.get(LWS_SIZE))

    def outdated(lws: Object) -> bool:
        return own_size is not None and count(get(lws, "spec", "leaderWorkerTemplate", "size"), 1) != own_size

    lws = await _read(owners, LWS_API, "LeaderWorkerSet", namespace, name, None, outdated)
    if lws is None:
        return None
    template = get(lws, "spec", "leaderWorkerTemplate")
    # The LWS controller writes the group's size on each of its pods (annotation leaderworkerset.sigs.k8s.io/size):
    # during a rolling update that is the size of this pod's own revision.
    size = own_size if own_size is not None else count(get(template, "size"), 1)
    if size is None:
        return None
    worker_template = get(template, "workerTemplate", "spec")
    leader_template = get(template, "leaderTemplate", "spec") or worker_template
    leader_gpu, worker_gpu = requests_managed(leader_template, settings), requests_managed(worker_template, settings)
    source = f"LeaderWorkerSet {namespace}/{name} (size {size}"
    if get(lws, "spec", "startupPolicy") == "LeaderReady":
        if labels.get(LWS_WORKER_INDEX, "0") == "0" or not worker_gpu:
            return None
        return _gang(f"{source}, LeaderReady: workers only)", gang_name("lws", name, group, "workers"), size - 1)
    members = (1 if leader_gpu else 0) + (size - 1 if worker_gpu else 0)
    if not leader_gpu:
        source += ", leader without GPUs not counted"
    if not worker_gpu:
        source += ", workers without GPUs not counted"
    return _gang(f"{source})", gang_name("lws", name, group), members)


async def _raycluster(
    labels: dict[str, str], uid: str | None, namespace: str, owners: Owners
) -> Claim | None:
    cluster, group = labels[RAY_CLUSTER], labels[RAY_GROUP]
    raycluster = await owners.get_owner(RAY_API, "RayCluster", namespace, cluster, uid=uid)
    if raycluster is None or get(raycluster, "spec", "enableInTreeAutoscaling") is True:
        return None
    groups = get(raycluster, "spec", "workerGroupSpecs")
    for spec in groups if isinstance(groups, list) else []:
        if get(spec, "groupName") != group or get(spec, "suspended") is True:
            continue
        replicas, hosts = count(get(spec, "replicas"), 0), count(get(spec, "numOfHosts"), 1)
        if replicas is None or hosts is None:
            return None
        source = f"RayCluster {namespace}/{cluster} (workerGroup {group}: replicas {replicas} × numOfHosts {hosts})"
        return _gang(source, gang_name("raycluster", cluster, group), replicas * hosts)
    return None
