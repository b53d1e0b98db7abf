"""Rule 3's reads: all at once, under one budget, so the webhook answers inside its timeoutSeconds.

The fake owners below never answer on their own: a read finishes only when the test lets it (or never),
so nothing here depends on how fast the machine is. `asyncio.timeout(GUARD)` only turns a hang into a
failure; no assertion is about time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from tests.webhook.helpers import gang, gpu_pod, obj, owner_ref, run
from webhook.owners import DictOwners, Object
from webhook.settings import WebhookSettings

GUARD = 60.0
GPU_TEMPLATE = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
JOB = obj(
    "batch/v1",
    "Job",
    "train",
    {"parallelism": 4, "completions": 4, "completionMode": "Indexed", "template": GPU_TEMPLATE},
)
PODGROUP = obj("scheduling.volcano.sh/v1beta1", "PodGroup", "vc", {"minMember": 3})


class GatedOwners(DictOwners):
    """DictOwners whose reads wait until `release` is set, counting reads in flight at once."""

    def __init__(self, objects: list[Object], *, wait_for: int | None = None, never: Collection[str] = ()) -> None:
        super().__init__(objects)
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.wait_for = wait_for
        self.never = never

    async def get_owner(self, api_version: str, kind: str, namespace: str, name: str, **kwargs: Any) -> Object | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.wait_for is not None and self.in_flight >= self.wait_for:
            self.release.set()
        try:
            if kind in self.never:
                await asyncio.Event().wait()  # a read that never comes back
            await self.release.wait()
            return await super().get_owner(api_version, kind, namespace, name, **kwargs)
        finally:
            self.in_flight -= 1


def job_pod_with_every_podgroup_convention() -> dict[str, Any]:
    """A Job pod naming a PodGroup in all three conventions and stating no size: four reads."""
    return gpu_pod(
        owners=[owner_ref("Job", "train")],
        labels={"scheduling.x-k8s.io/pod-group": "pg"},
        annotations={"scheduling.k8s.io/group-name": "vc"},
        schedulingGroup={"podGroupName": "wl"},
    )


async def test_owner_and_podgroup_reads_run_at_the_same_time() -> None:
    """Each read waits until all four are in flight: read one after another they would never finish."""
    owners = GatedOwners([JOB, PODGROUP], wait_for=4)
    async with asyncio.timeout(GUARD):
        result = await run(
            job_pod_with_every_podgroup_convention(),
            owners=owners,
            settings=WebhookSettings(gang_lookup_budget_seconds=GUARD * 2),
        )
    assert owners.most_in_flight == 4
    assert result.allowed and gang(result) == ("wl", "4")  # the Job states the size; PodGroups are a fallback
    assert result.warnings == []


async def test_reads_that_outlast_the_budget_are_cut_off_and_the_pod_is_admitted_with_a_warning() -> None:
    owners = GatedOwners([JOB, PODGROUP], never={"Job", "PodGroup"})
    async with asyncio.timeout(GUARD):
        result = await run(
            job_pod_with_every_podgroup_convention(),
            owners=owners,
            settings=WebhookSettings(gang_lookup_budget_seconds=0.05),
        )
    assert result.allowed
    assert gang(result) == ("wl", None)  # the name the pod declares; no size could be read
    assert result.warnings == [
        "gpuplace could not read the objects sizing this pod's gang within 0.05 s (gang_lookup_budget_seconds); "
        "their gang size is not used for this pod"
    ]
    assert owners.in_flight == 0  # nothing is left waiting in this request


async def test_reads_done_within_the_budget_are_used_when_another_is_cut_off() -> None:
    owners = GatedOwners([JOB, PODGROUP], never={"PodGroup"})
    owners.release.set()
    async with asyncio.timeout(GUARD):
        result = await run(
            job_pod_with_every_podgroup_convention(),
            owners=owners,
            settings=WebhookSettings(gang_lookup_budget_seconds=0.05),
        )
    assert result.allowed and gang(result) == ("wl", "4")
