"""Pod JSON → GpuRequest: resources, annotations, selectors, and the messages for malformed pods."""

from __future__ import annotations

from typing import Any

import pytest

from placement_core import GpuRequest, NvlinkNeed
from scheduler.contract import Record, RecordError, decode_record, encode_record
from scheduler.podreq import PodRequestError, RequestMemo, Rules, pod_request
from scheduler.wire import Pod
from tests.scheduler import objects as o

RULES = Rules()


def req(p: dict[str, Any]) -> GpuRequest:
    return pod_request(Pod.model_validate(p), RULES)


def test_whole_gpus_cpu_memory() -> None:
    r = req(o.pod("p", gpus=4, cpu="1500m", memory="2Gi"))
    assert (r.count, r.milli, r.cpu_milli, r.memory_mib, r.mig_profile) == (4, 1000, 1500, 2048, None)
    assert r.nvlink is NvlinkNeed.PREFERRED


def test_limits_only_and_init_and_sidecar_containers() -> None:
    p = o.pod("p", cpu="1", memory="1Gi")
    p["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 2, "cpu": "2"}}
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
        {"name": "init", "resources": {"requests": {"cpu": "4", "nvidia.com/gpu": "1"}}},
    ]
    p["spec"]["overhead"] = {"cpu": "100m"}
    r = req(p)
    assert r.count == 2  # max(2 regular, 1 init)
    assert r.cpu_milli == 4600  # init (4) beside the sidecar started before it (0.5), plus overhead


def test_mig_share_models_memory_nvlink() -> None:
    assert req(o.pod("p", mig="3g.40gb")).mig_profile == "3g.40gb"
    share = req(o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-milli": "250"}))
    assert (share.count, share.milli) == (1, 250)
    for no_gpu in (o.pod("p", annotations={"gpuplace.io/gpu-milli": "500"}), o.pod("p", gpus=0)):
        no_gpu["metadata"]["annotations"]["gpuplace.io/gpu-milli"] = "half"
        no_gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "0"
        assert (req(no_gpu).count, req(no_gpu).milli) == (0, 1000)  # no device from the kubelet: no share
    m = req(o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-models": "H100-80GB, NVIDIA-A100-SXM4-80GB"}))
    assert m.models == frozenset({"H100-80GB", "A100-80GB"})
    sel = req(
        o.pod(
            "p",
            gpus=1,
            node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            annotations={"gpuplace.io/gpu-models": "H100-80GB,A100-80GB"},
        )
    )
    assert sel.models == frozenset({"H100-80GB"})
    mem = req(
        o.pod(
            "p", gpus=2, annotations={"gpuplace.io/gpu-memory-mib": "40000", "gpuplace.io/nvlink": "Required"}
        )
    )
    assert (mem.min_memory_mib, mem.nvlink) == (40000, NvlinkNeed.REQUIRED)


def test_a_pod_without_gpus_is_a_zero_request() -> None:
    assert req(o.pod("p")).count == 0


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (o.pod("p", gpus=2, annotations={"gpuplace.io/gpu-milli": "500"}), "share of one GPU"),
        (o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-milli": "half"}), "not an integer"),
        (o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-milli": "0"}), "between 1 and 1000"),
        (o.pod("p", gpus=1, mig="1g.10gb"), "not both"),
        (o.pod("p", gpus=1, annotations={"gpuplace.io/nvlink": "maybe"}), "required, preferred or none"),
        (o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-models": " , "}), "names no model"),
        (o.pod("p", gpus=1, cpu="lots"), "not a Kubernetes quantity"),
        (o.pod("p", gpus=65), "GPU count must be"),
    ],
)
def test_malformed_pods_say_why(pod: dict[str, Any], message: str) -> None:
    with pytest.raises(PodRequestError, match=message):
        req(pod)


def test_two_mig_profiles_are_refused() -> None:
    p = o.pod("p", mig="1g.10gb")
    p["spec"]["containers"].append({"name": "b", "resources": {"limits": {"nvidia.com/mig-3g.40gb": "1"}}})
    with pytest.raises(PodRequestError, match="one MIG profile"):
        req(p)


def test_memo_parses_once_per_resource_version() -> None:
    memo = RequestMemo(RULES, size=2)
    p = Pod.model_validate(o.pod("p", gpus=1))
    assert memo.get(p) is memo.get(p)
    bad = Pod.model_validate(o.pod("q", gpus=1, annotations={"gpuplace.io/nvlink": "x"}))
    for _ in range(2):
        with pytest.raises(PodRequestError):
            memo.get(bad)


def test_tolerant_pod_parsing() -> None:
    p = o.pod("p", gpus=1, priority=None)
    p["spec"]["futureField"] = {"x": 1}
    p["metadata"]["annotations"] = None
    pod = Pod.model_validate(p)
    assert pod.spec.priority == 0 and pod.metadata.annotations == {}


def test_placement_record_round_trip_and_errors() -> None:
    from placement_core import Placement

    p = Placement(node="n", gpus=(0, 3), milli=1000, cpu_milli=5, memory_mib=7)
    rec = decode_record(encode_record(p, ["GPU-a", "GPU-b"]))
    assert rec == Record("n", (0, 3), 1000, (), ("GPU-a", "GPU-b"))
    assert rec.placement(5, 7) == p
    for bad in [
        "{",
        "[]",
        '{"v":2,"node":"n"}',
        '{"node":""}',
        '{"node":"n","gpus":[-1]}',
        '{"node":"n","milli":0}',
        '{"node":"n","mig":[[1]]}',
        '{"node":"n","uuids":[1]}',
    ]:
        with pytest.raises(RecordError):
            decode_record(bad)
