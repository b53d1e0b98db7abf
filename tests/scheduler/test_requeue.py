"""scheduler.requeue: pods kube-scheduler parked while gpuplace could not answer get an update of their
own once it can (so they do not wait for the 5-minute flush); no other pod is touched."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.binder import MemoryBinder
from scheduler.requeue import ANNOTATION, refused_while_unavailable, requeue
from tests.scheduler import objects as o

REFUSED = (
    'Post "https://127.0.0.1:8888/scheduler/filter": dial tcp 127.0.0.1:8888: connect: connection refused'
)


def parked(name: str, message: str, *, status: str = "False", node: str = "") -> dict[str, Any]:
    pod = o.pod(name, gpus=1, node_name=node)
    reason = "SchedulerError" if message.startswith("Post") else "Unschedulable"
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": status, "reason": reason, "message": message}
    ]
    return pod


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (parked("down", REFUSED), True),
        (
            parked("unready", "gpuplace is not ready: waiting for pods (state is rebuilt before it answers)"),
            True,
        ),
        (parked("eof", 'Post "http://gpuplace:8888/scheduler/filter": EOF'), True),
        (parked("rejected", "0/3 nodes are available: 3 gpuplace: needs 8 free GPUs; 2 free here."), False),
        (parked("prioritize", 'Post "https://x/scheduler/prioritize": connection refused'), False),
        (parked("bound", REFUSED, node="h0"), False),
        (parked("scheduled", REFUSED, status="True"), False),
        (o.pod("fresh", gpus=1), False),
    ],
)
def test_only_pods_whose_last_attempt_failed_on_gpuplace_being_unavailable(
    pod: dict[str, Any], expected: bool
) -> None:
    assert refused_while_unavailable(pod) is expected


async def test_requeue_writes_the_annotation_on_exactly_those_pods() -> None:
    api = MemoryBinder()
    down = api.add(parked("down", REFUSED))
    other = api.add(parked("rejected", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))
    gone = parked("gone", REFUSED)  # listed, deleted before its write: no error, nothing created
    pending = [down, other, gone]
    assert await requeue(pending, api.patch_pod_annotations) == 2
    assert ("default", "gone") not in api.pods
    assert ANNOTATION in api.pods[("default", "down")]["metadata"]["annotations"]
    assert ANNOTATION not in (api.pods[("default", "rejected")]["metadata"].get("annotations") or {})
