"""Rule 1 (GPU toleration) and rule 4 (scheduler routing)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhook.helpers import container, gpu_pod, pod, run
from webhook.settings import GpuToleration, SchedulerRouting, WebhookSettings

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OTHER = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}


async def test_gpu_pods_get_the_toleration_appended() -> None:
    result = await run(gpu_pod(tolerations=[OTHER]))
    assert result.pod["spec"]["tolerations"] == [OTHER, GPU_TOLERATION]
    assert result.patch == [{"op": "add", "path": "/spec/tolerations/1", "value": GPU_TOLERATION}]


async def test_non_gpu_pods_never_get_it() -> None:
    result = await run(pod(container(limits={"cpu": "1"})))
    assert "tolerations" not in result.pod["spec"]


@pytest.mark.parametrize(
    "existing",
    [
        GPU_TOLERATION,
        {"key": "nvidia.com/gpu", "operator": "Exists"},  # every effect
        {"operator": "Exists"},  # every taint
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": None},
    ],
)
async def test_an_equivalent_toleration_is_kept_as_is(existing: dict[str, Any]) -> None:
    result = await run(gpu_pod(tolerations=[existing]))
    assert result.pod["spec"]["tolerations"] == [existing]
    assert result.outcome == "unchanged"


@pytest.mark.parametrize(
    "existing",
    [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "value": "present"},  # operator defaults to Equal
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"},
        {"operator": "Exists", "effect": "PreferNoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Lt", "value": "5", "effect": "NoSchedule"},
    ],
)
async def test_a_narrower_toleration_gets_the_gpu_one_added(existing: dict[str, Any]) -> None:
    result = await run(gpu_pod(tolerations=[existing]))
    assert result.pod["spec"]["tolerations"] == [existing, GPU_TOLERATION]


async def test_configured_toleration_and_equal_matching() -> None:
    wanted = GpuToleration(key="gpu", operator="Equal", value="true", effect="NoSchedule")
    settings = WebhookSettings(toleration=wanted)
    result = await run(gpu_pod(), settings=settings)
    assert result.pod["spec"]["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    same = await run(result.pod, settings=settings)
    assert same.patch == []
    other_value = await run(
        gpu_pod(tolerations=[{"key": "gpu", "operator": "Equal", "value": "no"}]), settings=settings
    )
    assert len(other_value.pod["spec"]["tolerations"]) == 2


async def test_the_toleration_rule_can_be_disabled() -> None:
    result = await run(gpu_pod(), settings=WebhookSettings(toleration=None))
    assert result.outcome == "unchanged"


def test_toleration_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="operator Exists must not have a value"):
        GpuToleration(value="x")
    with pytest.raises(ValueError, match="only valid with effect NoExecute"):
        GpuToleration(toleration_seconds=30)
    assert GpuToleration(effect="NoExecute", toleration_seconds=30).as_kubernetes() == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }


ROUTING = WebhookSettings(routing=SchedulerRouting(enabled=True, scheduler_name="gpuplace"))


async def test_routing_is_off_by_default() -> None:
    result = await run(gpu_pod(tolerations=[GPU_TOLERATION]))
    assert result.pod["spec"]["schedulerName"] == "default-scheduler"


@pytest.mark.parametrize("default", ["default-scheduler", "", None])
async def test_routing_replaces_a_default_scheduler_name(default: str | None) -> None:
    p = gpu_pod(tolerations=[GPU_TOLERATION])
    if default is None:
        del p["spec"]["schedulerName"]
    else:
        p["spec"]["schedulerName"] = default
    result = await run(p, settings=ROUTING)
    assert result.pod["spec"]["schedulerName"] == "gpuplace"


async def test_routing_keeps_a_chosen_scheduler_and_skips_non_gpu_pods() -> None:
    chosen = gpu_pod(tolerations=[GPU_TOLERATION], schedulerName="volcano")
    assert (await run(chosen, settings=ROUTING)).outcome == "unchanged"
    cpu = pod(container(limits={"cpu": "1"}))
    assert (await run(cpu, settings=ROUTING)).pod["spec"]["schedulerName"] == "default-scheduler"
