"""Allocated ResourceClaims in the cache: gpuplace's ledger equals status.allocation (scheduler.dra)."""

from __future__ import annotations

import copy
from typing import Any

from scheduler.context import ExtenderContext
from tests.scheduler import dra_payloads as rp
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx


def dra_node(name: str) -> dict[str, Any]:
    """A node whose GPUs only the DRA driver publishes (no device plugin: no nvidia.com/gpu)."""
    return o.node(name, product="", gpus=0)


def busy(ctx: ExtenderContext, node: str) -> list[int]:
    s = ctx.cache.state
    row = s.index[node]
    return [g for g in range(int(s.node_gpu_count[row])) if s.gpu_free_milli[row, g] < 1000]


def setup(
    slices: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    pods: list[dict[str, Any]] = (),
    nodes: list[dict[str, Any]] | None = None,
) -> ExtenderContext:  # type: ignore[assignment]
    ctx = make_ctx(nodes if nodes is not None else [dra_node("n1")], list(pods))
    ctx.cache.replace_slices(slices)
    ctx.cache.replace_claims(claims)
    return ctx


def test_slices_become_the_nodes_gpus() -> None:
    ctx = setup([rp.a100_node_slice("n1")], [])
    inv = ctx.cache.nodes["n1"]
    assert inv.source == "dra" and len(inv.spec.gpus) == 8 and inv.gpu_uuids[2] == rp.uuid("n1", 2)
    assert busy(ctx, "n1") == []


def test_device_plugin_and_slices_on_one_node_count_once() -> None:
    ctx = setup([rp.a100_node_slice("n1")], [], nodes=[o.node("n1", product="NVIDIA-A100-SXM4-80GB", gpus=8)])
    assert int(ctx.cache.state.node_gpu_count[ctx.cache.state.index["n1"]]) == 8


def test_allocated_claim_holds_exactly_its_devices_until_deallocated() -> None:
    c = rp.claim("p1", count=2)
    held = rp.allocated(c, "n1", ["gpu-2", "gpu-5"])
    ctx = setup([rp.a100_node_slice("n1")], [held], [rp.pod_with_claim("p1", "p1-gpu-x7k2p", node="n1")])
    assert busy(ctx, "n1") == [2, 5]
    ctx.cache.apply_claim("MODIFIED", c)  # status.allocation cleared
    assert busy(ctx, "n1") == []
    ctx.cache.apply_claim("MODIFIED", held)
    ctx.cache.apply_claim("DELETED", held)
    assert busy(ctx, "n1") == [] and ctx.cache.dra is not None and ctx.cache.dra.problems() == []


def test_claim_released_when_its_reserving_pod_is_gone() -> None:
    pod = rp.pod_with_claim("p1", "p1-gpu-x7k2p", node="n1")
    ctx = setup([rp.a100_node_slice("n1")], [rp.allocated(rp.claim("p1"), "n1", ["gpu-0"])], [pod])
    assert busy(ctx, "n1") == [0]
    ctx.cache.apply_pod("DELETED", pod)
    assert busy(ctx, "n1") == []


def test_claim_of_a_pod_missing_from_the_list_is_released_at_relist() -> None:
    ctx = setup([rp.a100_node_slice("n1")], [rp.allocated(rp.claim("p1"), "n1", ["gpu-0"])], [])
    assert busy(ctx, "n1") == []  # reserved for pod-uid-p1, which the (complete) pod list does not show


def test_admin_access_consumes_nothing() -> None:
    admin = rp.allocated(rp.claim("mon", admin=True), "n1", ["gpu-0"], admin=True)
    user = rp.allocated(rp.claim("p1"), "n1", ["gpu-0"])
    pods = [rp.pod_with_claim(n, "x", node="n1") for n in ("mon", "p1")]
    ctx = setup([rp.a100_node_slice("n1")], [admin], pods)
    assert busy(ctx, "n1") == []
    ctx.cache.apply_claim("ADDED", user)
    assert busy(ctx, "n1") == [0] and ctx.cache.dra is not None and ctx.cache.dra.problems() == []


def shared_slice() -> dict[str, Any]:
    s = rp.a100_node_slice("n1")
    dev = s["spec"]["devices"][0]
    dev["allowMultipleAllocations"] = True
    dev["capacity"]["memory"]["requestPolicy"] = {"default": "10Gi", "validRange": {"min": "1Gi"}}
    return s


def test_consumable_capacity_shares_a_device_within_its_capacity() -> None:
    pods = [rp.pod_with_claim(n, "x", node="n1") for n in ("a", "b", "c")]
    a = rp.allocated(
        rp.claim("a", capacity={"memory": "40Gi"}),
        "n1",
        ["gpu-0"],
        consumed={"memory": "40Gi"},
        share_ids=["s-a"],
    )
    b = rp.allocated(
        rp.claim("b", capacity={"memory": "40Gi"}),
        "n1",
        ["gpu-0"],
        consumed={"memory": "40Gi"},
        share_ids=["s-b"],
    )
    ctx = setup([shared_slice()], [a, b], pods)
    assert ctx.cache.dra is not None
    assert busy(ctx, "n1") == [0] and ctx.cache.dra.problems() == []
    c = rp.allocated(
        rp.claim("c", capacity={"memory": "1Gi"}),
        "n1",
        ["gpu-0"],
        consumed={"memory": "1Gi"},
        share_ids=["s-c"],
    )
    ctx.cache.apply_claim("ADDED", c)
    over = f"n1: device gpu.nvidia.com/n1/gpu-0 capacity memory over-consumed ({81 << 30} > {80 << 30})"
    assert ctx.cache.dra.problems() == [over]


def test_one_device_in_two_claims_without_share_is_a_problem() -> None:
    pods = [rp.pod_with_claim(n, "x", node="n1") for n in ("a", "b")]
    a = rp.allocated(rp.claim("a"), "n1", ["gpu-3"])
    b = rp.allocated(rp.claim("b"), "n1", ["gpu-3"])
    ctx = setup([rp.a100_node_slice("n1")], [a, b], pods)
    assert ctx.cache.dra is not None
    assert ctx.cache.dra.problems() == [
        "n1: device gpu.nvidia.com/n1/gpu-3 allocated to default/a-gpu-x7k2p and default/b-gpu-x7k2p"
    ]


def partitionable_slices() -> list[dict[str, Any]]:
    """DRAPartitionableDevices as NVIDIA's dynamic MIG publishes it: one counter set per GPU in its own
    slice, the whole GPU consuming all of it, each possible MIG device a part."""
    u = rp.uuid("n1", 0)
    counters = [
        {"name": "gpu-0-counter-set", "counters": {f"memorySlice{i}": {"value": "1"} for i in range(8)}}
    ]
    whole = rp.gpu_device(0, u, "pci0000:00")
    whole["consumesCounters"] = [
        {"counterSet": "gpu-0-counter-set", "counters": {f"memorySlice{i}": {"value": "1"} for i in range(8)}}
    ]
    parts = []
    for start in (0, 4):
        m = rp.mig_device(0, u, "3g.40gb", 9, start, 4, "")
        del m["attributes"]["uuid"]
        m["consumesCounters"] = [
            {
                "counterSet": "gpu-0-counter-set",
                "counters": {f"memorySlice{i}": {"value": "1"} for i in range(start, start + 4)},
            }
        ]
        parts.append(m)
    return [
        rp.resource_slice("n1", [], count=2, counters=counters),
        rp.resource_slice("n1", [whole, *parts], count=2, index=1),
    ]


def test_partitions_consume_their_parents_counters() -> None:
    pods = [rp.pod_with_claim(n, "x", node="n1") for n in ("a", "b", "w")]
    a = rp.allocated(rp.claim("a", device_class="mig.nvidia.com"), "n1", ["gpu-0-mig-3g.40gb-9-0"])
    ctx = setup(partitionable_slices(), [a], pods)
    assert ctx.cache.dra is not None
    assert busy(ctx, "n1") == [0] and ctx.cache.dra.problems() == []  # a partitioned GPU is not whole
    b = rp.allocated(rp.claim("b", device_class="mig.nvidia.com"), "n1", ["gpu-0-mig-3g.40gb-9-4"])
    ctx.cache.apply_claim("ADDED", b)
    assert ctx.cache.dra.problems() == []
    w = rp.allocated(rp.claim("w"), "n1", ["gpu-0"])
    ctx.cache.apply_claim("ADDED", w)
    assert len(ctx.cache.dra.problems()) == 8  # every memory slice of gpu-0 counted twice
    assert all("counter gpu-0-counter-set/memorySlice" in p for p in ctx.cache.dra.problems())


def test_extended_resource_pod_counts_through_its_claim_only() -> None:
    pod = o.pod("ext", gpus=2, node_name="n1", uid="pod-uid-ext")
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
    claim = rp.allocated(rp.claim("ext", count=2), "n1", ["gpu-0", "gpu-1"], pod="ext")
    claim["metadata"]["name"] = "ext-extended-resources-abcde"
    ctx = setup([rp.a100_node_slice("n1")], [claim], [pod])
    assert busy(ctx, "n1") == [0, 1]


def test_rebuilt_after_restart_from_the_lists() -> None:
    pods = [rp.pod_with_claim("p1", "p1-gpu-x7k2p", node="n1")]
    claims = [rp.allocated(rp.claim("p1", count=3), "n1", ["gpu-1", "gpu-4", "gpu-6"])]
    first = setup([rp.a100_node_slice("n1")], claims, pods)
    second = make_ctx([dra_node("n1")], copy.deepcopy(pods))  # a new process: lists in another order
    second.cache.replace_claims(copy.deepcopy(claims))
    second.cache.replace_slices([rp.a100_node_slice("n1")])
    assert busy(first, "n1") == busy(second, "n1") == [1, 4, 6]


def test_newer_incomplete_generation_keeps_the_old_devices_out() -> None:
    ctx = setup([rp.a100_node_slice("n1")], [])
    ctx.cache.apply_slice("ADDED", rp.a100_node_slice("n1", generation=2, count=2, index=7))
    assert ctx.cache.nodes["n1"].source != "dra"  # gen 2 incomplete, gen 1 outdated: nothing counts


def test_malformed_objects_are_ignored_not_fatal() -> None:
    bad_slice = rp.a100_node_slice("n1")
    bad_slice["spec"]["devices"][0]["attributes"] = ["not", "a", "map"]
    bad_claim = rp.allocated(rp.claim("p1"), "n1", ["gpu-0"])
    bad_claim["status"]["allocation"]["devices"]["results"][0]["consumedCapacity"] = {"memory": "lots"}
    ctx = setup([bad_slice, rp.a100_node_slice("n2")], [bad_claim], nodes=[dra_node("n1"), dra_node("n2")])
    assert ctx.cache.dra is not None and ctx.cache.dra.warnings == 2
    assert ctx.cache.nodes["n1"].source != "dra" and ctx.cache.nodes["n2"].source == "dra"
