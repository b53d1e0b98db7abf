"""Rule 3's outputs: gpuplace's own keys only, and reinvocation that follows the owner instead of fighting it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.webhook.helpers import (
    GANG_LABEL,
    MIN_MEMBER,
    NS,
    PLUGINS_LABEL,
    gang,
    gpu_pod,
    obj,
    owner_ref,
    run,
)
from webhook.owners import DictOwners
from webhook.settings import WebhookSettings

GPU_TEMPLATE = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}


def indexed_job(n: int, name: str = "train") -> dict[str, Any]:
    spec = {"parallelism": n, "completions": n, "completionMode": "Indexed", "template": GPU_TEMPLATE}
    return obj("batch/v1", "Job", name, spec)


def job_pod(name: str = "train", **kwargs: Any) -> dict[str, Any]:
    return gpu_pod(owners=[owner_ref("Job", name)], labels={"batch.kubernetes.io/job-name": name}, **kwargs)


async def test_a_derived_gang_goes_under_gpuplace_keys_and_never_under_the_scheduler_plugins_label() -> None:
    """Coscheduling denies a pod whose scheduling.x-k8s.io/pod-group names no PodGroup: writing a derived
    name there would leave every derived-gang GPU pod Pending on a cluster running it."""
    result = await run(job_pod(), owners=DictOwners([indexed_job(4)]))
    labels, annotations = result.pod["metadata"]["labels"], result.pod["metadata"].get("annotations", {})
    assert PLUGINS_LABEL not in labels
    assert not any(op["path"].endswith("scheduling.x-k8s.io~1pod-group") for op in result.patch)
    assert (labels[GANG_LABEL], annotations[MIN_MEMBER]) == ("job_train", "4")


async def test_declared_gangs_are_translated_into_gpuplace_keys_and_leave_the_tool_keys_alone() -> None:
    p = gpu_pod(
        labels={"kueue.x-k8s.io/pod-group-name": "batch-1"},
        annotations={"kueue.x-k8s.io/pod-group-total-count": "3"},
    )
    result = await run(p)
    assert gang(result) == ("batch-1", "3")
    assert PLUGINS_LABEL not in result.pod["metadata"]["labels"]
    assert result.pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "batch-1"


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("gang_label", "scheduling.x-k8s.io/pod-group"),
        ("gang_label", "kueue.x-k8s.io/pod-group-name"),
        ("gang_min_member_annotation", "gpuplace.io/gang-size"),
        ("gang_min_member_annotation", "kueue.x-k8s.io/pod-group-total-count"),
    ],
)
def test_gpuplace_can_not_be_configured_to_write_a_key_someone_else_sets(field: str, key: str) -> None:
    with pytest.raises(ValidationError, match="gpuplace writes only keys of its own"):
        WebhookSettings(**{field: key})


async def test_reinvocation_after_the_owner_changed_follows_the_owner_instead_of_denying() -> None:
    """Pass one saw a Job of 4 (e.g. from a cache), pass two (reinvocationPolicy IfNeeded) sees it at 8:
    gpuplace's own annotation from pass one is not a declaration that contradicts the owner."""
    first = await run(job_pod(), owners=DictOwners([indexed_job(4)]))
    assert gang(first) == ("job_train", "4")
    second = await run(first.pod, owners=DictOwners([indexed_job(8)]))
    assert second.allowed, second.message
    assert gang(second) == ("job_train", "8")
    assert {"op": "replace", "path": f"/metadata/annotations/{MIN_MEMBER.replace('/', '~1')}", "value": "8"} in (
        second.patch
    )


async def test_reinvocation_that_cannot_read_the_owner_keeps_the_earlier_answer() -> None:
    first = await run(job_pod(), owners=DictOwners([indexed_job(4)]))
    second = await run(first.pod, owners=DictOwners())  # the read failed this time
    assert second.allowed and second.patch == [] and gang(second) == ("job_train", "4")


async def test_a_user_size_that_contradicts_the_owner_is_still_denied() -> None:
    result = await run(job_pod(annotations={"gpuplace.io/gang-size": "16"}), owners=DictOwners([indexed_job(8)]))
    assert not result.allowed and "contradictory sizes" in result.message
    assert NS in result.message
