"""What makes a workload gang-shaped: which Jobs are gangs, which members count, and how gangs are named.

Why apart from the owner readers (`gang_workloads`): these are pure functions of an owner's spec, each
with one upstream rule behind it, and they are what a reader checks against upstream first.

- Jobs: `is_gang_scheduling_candidate` is kube-controller-manager v1.36's own test
  (pkg/controller/job/util/utils.go, `IsGangSchedulingCandidate`, used by `shouldManageWorkloadForJob`
  in pkg/controller/job/job_scheduling_manager.go under the alpha EnableWorkloadWithJob gate): parallelism
  > 1, completionMode Indexed, completions == parallelism, and no schedulingGroup on the pod template.
  NonIndexed and work-queue Jobs are not gangs.
- Members: only pods that request a managed GPU resource reach gpuplace, so a gang counts only those
  (`requests_managed` on the member's pod template). A CPU-only replicated job, a CPU LeaderWorkerSet
  leader or a CPU PyTorchJob replica type would otherwise hold the count above what can ever arrive.
- Names: `gang_name("job", "train")` is `job_train`. Kubernetes object names never contain `_` (DNS
  names), so `<kind>_<name>[_<part>]` is unique per owner: Job `train` ≠ PyTorchJob `train`, and JobSet
  `a` with replicatedJob `b` (`jobset_a_b`) ≠ Job `a-b` (`job_a-b`) ≠ JobSet `a-b` (`jobset_a-b`).
"""

from __future__ import annotations

from typing import Any

from webhook.rules.gang_declared import to_label_value
from webhook.settings import WebhookSettings

CONTAINER_LISTS = ("initContainers", "containers")


def get(obj: object, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where any step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def count(value: object, default: int) -> int | None:
    """A non-negative integer field, the default when absent, None when it is not an integer."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def is_gang_scheduling_candidate(job_spec: object) -> bool:
    """Upstream v1.36 `IsGangSchedulingCandidate` on a batch/v1 JobSpec (see the module docstring).

    `completionMode` absent means NonIndexed (pkg/apis/batch/v1/defaults.go, `SetDefaults_Job`), and
    kube-controller-manager's `isIndexedJob` reads it the same way.
    """
    parallelism = count(get(job_spec, "parallelism"), 0)
    completions = count(get(job_spec, "completions"), 0) if get(job_spec, "completions") is not None else None
    if parallelism is None or parallelism <= 1:
        return False
    if get(job_spec, "completionMode") != "Indexed":
        return False
    if completions != parallelism:
        return False
    return get(job_spec, "template", "spec", "schedulingGroup") is None


def job_width(job_spec: object) -> int | None:
    """Pods a JobSet's child Job runs together: its parallelism when it is a gang candidate, 1 for a
    single-pod Job (parallelism 1, completions absent or 1), else None (not gang-shaped)."""
    if is_gang_scheduling_candidate(job_spec):
        width: int = get(job_spec, "parallelism")
        return width
    parallelism, completions = get(job_spec, "parallelism"), get(job_spec, "completions")
    if count(parallelism, 1) == 1 and count(completions, 1) == 1:
        return 1
    return None


def requests_managed(pod_spec: object, settings: WebhookSettings) -> bool:
    """Whether a pod template's spec names a managed GPU resource in any container's limits or requests.

    The same key-presence test as `webhook.resources.is_gpu_pod` (and the manifest's matchConditions), on
    an owner's template; a malformed template is no GPU member. With DRA on, a template with
    `resourceClaims` counts as a GPU member too: telling its claims' classes apart would take API reads
    for every owner template, so a member whose only claims are another driver's (a NIC) is counted, and
    such a gang waits for it (deploy/webhook/README.md, "GPUs from resource claims").
    """
    if settings.dra.enabled and get(pod_spec, "resourceClaims"):
        return True
    for list_name in CONTAINER_LISTS:
        containers = get(pod_spec, list_name)
        for container in containers if isinstance(containers, list) else []:
            for section in ("limits", "requests"):
                values = get(container, "resources", section)
                if isinstance(values, dict) and any(settings.is_managed(str(name)) for name in values):
                    return True
    return False


def gang_name(kind: str, *parts: str) -> str:
    """`<kind>_<part>_<part>...` as a label value (see the module docstring for why it is unique)."""
    return to_label_value("_".join((kind, *parts)))
