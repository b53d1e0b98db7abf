"""The audit the e2e tests rely on really catches double booking (no cluster needed).

The e2e verdict "no GPU double-booked" is only worth something if the checker fails on the cases it
claims to catch; these tests feed it hand-made pods and nodes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpuplace.localcluster import audit
from gpuplace.localcluster.fake_nodes import node_manifest


def bound(name: str, node: str, *, gpus: int = 0, mig: str | None = None, record: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    resource = f"nvidia.com/mig-{mig}" if mig else "nvidia.com/gpu"
    annotations = {"gpuplace.io/gpus": json.dumps({"v": 1, "node": node, **(record or {})})} if record else {}
    return {
        "metadata": {"name": name, "namespace": "t", "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": {resource: str(gpus)}}}]},
        "status": {"phase": "Pending"},
    }


NODES = [node_manifest("h", "hgx-h100", topology=True), node_manifest("m", "a100-80gb-mig", topology=True)]


def test_clean_placements_pass() -> None:
    pods = [
        bound("a", "h", gpus=2, record={"gpus": [0, 1]}),
        bound("b", "h", gpus=1, record={"gpus": [2]}),
        bound("c", "m", gpus=1, mig="3g.40gb", record={"mig": [[0, 0]]}),
        bound("d", "m", gpus=2, mig="1g.10gb", record={"mig": [[2, 0], [2, 1]]}),
    ]
    result = audit.audit(pods, NODES)
    assert result.ok, result.problems
    assert (result.gpu_pods, result.with_record) == (4, 4)
    assert audit.usage(pods, NODES) == {"h": (3, 8), "m": (3, 22)}
    assert audit.partially_used(audit.usage(pods, NODES)) == ["h", "m"]


@pytest.mark.parametrize(
    ("pods", "problem"),
    [
        ([bound("a", "h", gpus=2, record={"gpus": [0, 1]}), bound("b", "h", gpus=1, record={"gpus": [1]})],
         "GPU 1 given to t/a and t/b"),
        ([bound("a", "h", gpus=1, record={"gpus": [0], "milli": 600}),
          bound("b", "h", gpus=1, record={"gpus": [0], "milli": 600})], "shared beyond 1000m"),
        ([bound("a", "m", gpus=1, mig="3g.40gb", record={"mig": [[0, 1]]}),
          bound("b", "m", gpus=1, mig="3g.40gb", record={"mig": [[0, 1]]})], "GPU 0 slot 1 given to t/a and t/b"),
        ([bound("a", "m", gpus=1, mig="3g.40gb", record={"mig": [[2, 0]]})], "asks 3g.40gb, got 1g.10gb"),
        ([bound("a", "m", gpus=1, record={"gpus": [0]})], "GPU 0 of m is not a whole GPU"),
        ([bound("a", "h", gpus=2, record={"gpus": [3]})], "asks 2 GPUs, record has [3]"),
        ([bound("a", "h", gpus=1)], "no gpuplace.io/gpus record"),
        ([bound("a", "h", gpus=9, record={"gpus": list(range(8))})], "9 nvidia.com/gpu bound, allocatable 8"),
        ([{**bound("a", "h", gpus=1, record={"gpus": [0]}), "spec": {"containers": []}}],
         "gpuplace.io/gpus record on an unbound pod"),
    ],
)  # fmt: skip
def test_double_booking_and_bad_records_are_caught(pods: list[dict[str, Any]], problem: str) -> None:
    result = audit.audit(pods, NODES)
    assert any(problem in p for p in result.problems), result.problems


def test_terminating_pods_hold_their_gpus_and_finished_ones_do_not() -> None:
    terminating = bound("old", "h", gpus=1, record={"gpus": [0]})
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    newcomer = bound("new", "h", gpus=1, record={"gpus": [0]})
    assert any("GPU 0 given to t/old and t/new" in p for p in audit.audit([terminating, newcomer], NODES).problems)
    finished = {**bound("done", "h", gpus=1, record={"gpus": [0]}), "status": {"phase": "Succeeded"}}
    assert audit.audit([finished, newcomer], NODES).ok


def test_pods_of_a_deleted_node_are_counted_not_flagged() -> None:
    """Until the pod garbage collector removes them, a deleted node's pods are still bound to it."""
    result = audit.audit([bound("a", "gone", gpus=8, record={"gpus": list(range(8))})], NODES)
    assert result.ok, result.problems
    assert result.orphaned == 1


def sliced(name: str) -> dict[str, Any]:
    """An HGX H100 with time-slicing: 4 replicas per GPU, as GFD and the device plugin label it."""
    node = node_manifest(name, "hgx-h100", topology=True)
    labels = node["metadata"]["labels"]
    labels["nvidia.com/gpu.product"] += "-SHARED"
    labels["nvidia.com/gpu.replicas"] = "4"
    labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
    node["status"]["allocatable"]["nvidia.com/gpu"] = "32"
    return node


def test_a_share_on_gpus_without_time_slicing_is_caught() -> None:
    """Without replicas the device plugin hands each pod a whole GPU, so a share record there is wrong
    even alone (gpuplace refuses such shares). The old audit checked only the 1000m sum per GPU."""
    share = {"gpus": [0], "milli": 500}
    on_sliced = audit.audit([bound("a", "s", gpus=1, record=share), bound("b", "s", gpus=1, record=share)],
                            [sliced("s")])
    assert on_sliced.ok, on_sliced.problems
    result = audit.audit([bound("a", "h", gpus=1, record=share)], NODES)
    assert any("t/a: a 500m share of GPU 0 on h, whose GPUs are not time-sliced" in p for p in result.problems), (
        result.problems)


def test_gpu_demand_is_what_kube_scheduler_counts() -> None:
    """Upstream PodRequests (component-helpers resource/helpers.go, AggregateContainerRequests): the
    containers plus sidecars (restartPolicy Always init containers), at least the peak of any init
    container plus the sidecars started before it. gpuplace books that count; the old audit summed the
    containers only and reported a correct 2-GPU record as wrong (and undercounted the node's totals)."""
    def gpu(n: int) -> dict[str, Any]:
        return {"limits": {"nvidia.com/gpu": str(n)}}

    init = bound("init", "h", gpus=1, record={"gpus": [0, 1]})
    init["spec"]["initContainers"] = [{"name": "warm", "resources": gpu(2)}]
    sidecar = bound("sidecar", "h", gpus=1, record={"gpus": [2, 3]})
    sidecar["spec"]["initContainers"] = [{"name": "agent", "restartPolicy": "Always", "resources": gpu(1)}]
    assert audit.gpu_demand(init) == {"nvidia.com/gpu": 2}
    assert audit.gpu_demand(sidecar) == {"nvidia.com/gpu": 2}
    result = audit.audit([init, sidecar], NODES)
    assert result.ok, result.problems
    assert audit.usage([init, sidecar], NODES)["h"] == (4, 8)
