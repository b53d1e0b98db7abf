"""Rule 2: GPU requests equal limits; conflicts are denied naming container, resource and both values."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import container, pod, run


async def test_only_limits_copies_limits_to_requests() -> None:
    result = await run(pod(container("train", limits={"nvidia.com/gpu": "4", "cpu": "2"})))
    assert result.allowed and result.outcome == "patched"
    assert result.pod["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "4", "cpu": "2"},
        "requests": {"nvidia.com/gpu": "4"},
    }
    assert result.warnings == []


async def test_only_requests_copies_requests_to_limits_and_warns() -> None:
    result = await run(pod(container("train", requests={"nvidia.com/mig-1g.10gb": "2", "cpu": "500m"})))
    assert result.pod["spec"]["containers"][0]["resources"] == {
        "requests": {"nvidia.com/mig-1g.10gb": "2", "cpu": "500m"},
        "limits": {"nvidia.com/mig-1g.10gb": "2"},
    }
    assert result.warnings == [
        'gpuplace set container "train" limits nvidia.com/mig-1g.10gb=2 to match its requests'
    ]


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
        'container "train": nvidia.com/gpu requests 2 but limits 4; GPU requests must equal limits '
        "(set both to the same value, or only one of them)"
    )
    assert (result.outcome, result.verdict.reason) == ("denied", "requests_limits_conflict")


async def test_every_conflict_is_reported_including_init_containers() -> None:
    p = pod(
        container("a", requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "2"}),
        container("b", requests={"nvidia.com/mig-1g.10gb": "3"}, limits={"nvidia.com/mig-1g.10gb": "1"}),
        init=[container("warmup", requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "8"})],
    )
    result = await run(p)
    fix = "; GPU requests must equal limits (set both to the same value, or only one of them)"
    assert result.message == "; ".join(
        [
            'init container "warmup": nvidia.com/gpu requests 1 but limits 8' + fix,
            'container "a": nvidia.com/gpu requests 1 but limits 2' + fix,
            'container "b": nvidia.com/mig-1g.10gb requests 3 but limits 1' + fix,
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
