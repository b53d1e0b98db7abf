"""Rule 2: GPU requests equal limits; conflicts are denied naming container, resource and both values."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import container, pod, run
from webhook.rules.requests_limits import overcommit_allowed


async def test_only_limits_copies_limits_to_requests() -> None:
    result = await run(pod(container("train", limits={"nvidia.com/gpu": "4", "cpu": "2"})))
    assert result.allowed and result.outcome == "patched"
    assert result.pod["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "4", "cpu": "2"},
        "requests": {"nvidia.com/gpu": "4"},
    }
    assert result.warnings == []


@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"])
async def test_requests_without_a_limit_are_denied_as_upstream_validation_would(resource: str) -> None:
    """kube-apiserver refuses this container ("Limit must be set for non overcommitable resources",
    pkg/apis/core/validation validateResourceRequirements) in a Job template as in a pod: no silent fix."""
    result = await run(pod(container("train", requests={resource: "2", "cpu": "500m"})))
    assert not result.allowed and result.patch == [] and result.warnings == []
    assert result.message == (
        f'container "train": {resource} requests 2 but sets no limit; Kubernetes requires a limit for resources '
        'that cannot be overcommitted ("Limit must be set for non overcommitable resources"): '
        f"set limits {resource}: 2 (requests may then be left out)"
    )
    assert result.verdict.reason == "requests_limits_conflict"


def test_only_native_resources_other_than_hugepages_may_be_overcommitted() -> None:
    """Upstream IsOvercommitAllowed (pkg/apis/core/helper/helpers.go)."""
    assert overcommit_allowed("cpu") and overcommit_allowed("memory")
    assert overcommit_allowed("kubernetes.io/something")
    assert not overcommit_allowed("hugepages-2Mi")
    assert not overcommit_allowed("nvidia.com/gpu") and not overcommit_allowed("nvidia.com/mig-1g.10gb")


async def test_null_sections_are_filled() -> None:
    p = pod({"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": None}})
    result = await run(p)
    assert result.pod["spec"]["containers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "1"}


@pytest.mark.parametrize(("request_", "limit"), [("2", "2"), ("1", "1000m"), ("1", 1)])
async def test_equal_values_are_left_alone(request_: str, limit: str) -> None:
    result = await run(
        pod(container(requests={"nvidia.com/gpu": request_}, limits={"nvidia.com/gpu": limit}))
    )
    assert (
        result.pod["spec"]["containers"]
        == pod(container(requests={"nvidia.com/gpu": request_}, limits={"nvidia.com/gpu": limit}))["spec"][
            "containers"
        ]
    )


async def test_conflict_is_denied_with_container_resource_and_both_values() -> None:
    result = await run(
        pod(container("train", requests={"nvidia.com/gpu": "2"}, limits={"nvidia.com/gpu": "4"}))
    )
    assert not result.allowed and result.patch == []
    assert result.response["response"]["status"]["code"] == 403
    assert result.message == (
        'container "train": nvidia.com/gpu requests 2 but limits 4; GPU requests must equal limits: '
        "set limits nvidia.com/gpu: 2 to keep the request, or remove requests nvidia.com/gpu "
        "(it defaults to the limit)"
    )
    assert (result.outcome, result.verdict.reason) == ("denied", "requests_limits_conflict")


async def test_every_conflict_is_reported_including_init_containers() -> None:
    p = pod(
        container("a", requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "2"}),
        container("b", requests={"nvidia.com/mig-1g.10gb": "3"}, limits={"nvidia.com/mig-1g.10gb": "1"}),
        init=[container("warmup", requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "8"})],
    )
    result = await run(p)
    def fix(resource: str, request: str) -> str:
        return (
            f"; GPU requests must equal limits: set limits {resource}: {request} to keep the request, "
            f"or remove requests {resource} (it defaults to the limit)"
        )

    assert result.message == "; ".join(
        [
            'init container "warmup": nvidia.com/gpu requests 1 but limits 8' + fix("nvidia.com/gpu", "1"),
            'container "a": nvidia.com/gpu requests 1 but limits 2' + fix("nvidia.com/gpu", "1"),
            'container "b": nvidia.com/mig-1g.10gb requests 3 but limits 1' + fix("nvidia.com/mig-1g.10gb", "3"),
        ]
    )


async def test_non_gpu_resources_are_never_touched() -> None:
    p = pod(container(limits={"nvidia.com/gpu": "1", "cpu": "4"}, requests={"cpu": "1", "memory": "1Gi"}))
    result = await run(p)
    resources = result.pod["spec"]["containers"][0]["resources"]
    assert resources == {
        "limits": {"nvidia.com/gpu": "1", "cpu": "4"},
        "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
    }


async def test_values_are_copied_verbatim() -> None:
    result = await run(pod(container(limits={"nvidia.com/gpu": "1000m"})))
    assert result.pod["spec"]["containers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "1000m"}
