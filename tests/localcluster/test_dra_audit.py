"""The e2e audit's DRA checks, on recorded resource.k8s.io/v1 objects (gpuplace.localcluster.dra_audit)."""

from __future__ import annotations

from gpuplace.localcluster.audit import gpu_demand
from gpuplace.localcluster.dra_audit import dra_problems
from tests.scheduler import dra_payloads as rp
from tests.scheduler import objects as o
from tests.scheduler.test_dra_ledger import partitionable_slices, shared_slice


def test_clean_allocations_pass_and_admin_access_is_not_counted() -> None:
    a = rp.allocated(rp.claim("a", count=2), "n1", ["gpu-0", "gpu-1"])
    mon = rp.allocated(rp.claim("mon", admin=True), "n1", ["gpu-0"], admin=True)
    assert dra_problems([a, mon], [rp.a100_node_slice("n1")]) == []


def test_a_device_in_two_claims() -> None:
    a = rp.allocated(rp.claim("a"), "n1", ["gpu-3"])
    b = rp.allocated(rp.claim("b"), "n1", ["gpu-3"])
    assert dra_problems([a, b], [rp.a100_node_slice("n1")]) == [
        "device gpu.nvidia.com/n1/gpu-3 allocated to default/a-gpu-x7k2p and default/b-gpu-x7k2p"
    ]


def test_shares_within_and_beyond_capacity() -> None:
    def share(name: str, gib: int) -> dict:
        return rp.allocated(
            rp.claim(name), "n1", ["gpu-0"], consumed={"memory": f"{gib}Gi"}, share_ids=[f"s-{name}"]
        )

    assert dra_problems([share("a", 40), share("b", 40)], [shared_slice()]) == []
    assert dra_problems([share("a", 40), share("b", 41)], [shared_slice()]) == [
        f"device gpu.nvidia.com/n1/gpu-0: memory consumed {81 << 30} > capacity {80 << 30}"
    ]
    plain = rp.allocated(rp.claim("c"), "n1", ["gpu-0"])
    assert "allocated to" in dra_problems([share("a", 40), plain], [shared_slice()])[0]


def test_counters_of_partitions() -> None:
    mig = rp.allocated(rp.claim("a", device_class="mig.nvidia.com"), "n1", ["gpu-0-mig-3g.40gb-9-0"])
    whole = rp.allocated(rp.claim("w"), "n1", ["gpu-0"])
    assert dra_problems([mig], partitionable_slices()) == []
    problems = dra_problems([mig, whole], partitionable_slices())
    assert len(problems) == 4 and all(
        "counter set gpu.nvidia.com/n1/gpu-0-counter-set" in p for p in problems
    )


def test_device_of_an_old_generation_and_pod_on_another_node() -> None:
    a = rp.allocated(rp.claim("a"), "n1", ["gpu-7"])
    newer = rp.resource_slice("n1", [rp.gpu_device(0, "GPU-x", "r0")], generation=2)
    pod = rp.pod_with_claim("a", "a-gpu-x7k2p", node="n2")
    assert dra_problems([a], [rp.a100_node_slice("n1"), newer], [pod]) == [
        "claim default/a-gpu-x7k2p: allocated on n1, its pod a is bound to n2",
        "claim default/a-gpu-x7k2p: device gpu.nvidia.com/n1/gpu-7 is not published in its pool's newest generation",
    ]


def test_extended_resource_served_by_dra_is_not_device_plugin_demand() -> None:
    pod = o.pod("ext", gpus=2, node_name="n1")
    assert gpu_demand(pod) == {"nvidia.com/gpu": 2}
    pod["status"]["extendedResourceClaimStatus"] = {
        "resourceClaimName": "ext-extended-resources-abcde",
        "requestMappings": [
            {
                "containerName": "main",
                "requestName": "container-0-request-0",
                "resourceName": "nvidia.com/gpu",
            }
        ],
    }
    assert gpu_demand(pod) == {}
