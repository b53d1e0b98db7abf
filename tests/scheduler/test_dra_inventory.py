"""ResourceSlices as NVIDIA's driver publishes them → the node's GPUs (scheduler.dra.inventory)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from placement_core import NodeSpec
from scheduler.dra.inventory import counted_pools, node_devices, node_spec
from scheduler.dra.objects import DraObjectError, parse_claim, parse_slice
from tests.scheduler import dra_payloads as rp

DRIVERS = frozenset({rp.DRIVER})


def test_slice_parses_as_published() -> None:
    s = parse_slice(rp.a100_node_slice("n1"))
    assert (s.driver, s.pool, s.generation, s.slice_count, s.node) == (rp.DRIVER, "n1", 1, 1, "n1")
    d = s.devices[0]
    assert d.name == "gpu-0" and d.kind == "gpu"
    assert d.attr("productName") == "NVIDIA A100-SXM4-80GB"
    assert d.attr("cudaComputeCapability") == "8.0.0"
    assert d.attr("resource.kubernetes.io/pcieRoot") == "pci0000:00"
    assert d.capacity["memory"] == Decimal(80 << 30)


def test_bad_quantity_is_a_clear_error() -> None:
    raw = rp.a100_node_slice("n1")
    raw["spec"]["devices"][0]["capacity"]["memory"]["value"] = "lots"
    with pytest.raises(
        DraObjectError, match=r"ResourceSlice n1-gpu\.nvidia\.com-00000: device gpu-0 capacity memory"
    ):
        parse_slice(raw)


def test_whole_gpus_indexed_by_minor_with_model_and_pcie_roots() -> None:
    slices = [parse_slice(rp.a100_node_slice("n1"))]
    nd = node_devices("n1", counted_pools(slices, DRIVERS)["n1"])
    assert [g.minor for g in nd.gpus] == list(range(8))
    assert [nd.pcie_root(i) for i in range(8)] == ["pci0000:00"] * 4 + ["pci0000:80"] * 4
    spec = node_spec(nd, NodeSpec("n1", None, cpu_milli=64000, memory_mib=512000, zone="z1"))
    assert spec.model is not None and spec.model.name == "A100-80GB"
    assert [g.memory_mib for g in spec.gpus] == [81920] * 8
    assert spec.gpus[3].uuid == rp.uuid("n1", 3) and spec.zone == "z1" and not spec.time_sliced


def test_only_the_newest_complete_generation_counts() -> None:
    old = parse_slice(rp.a100_node_slice("n1", generation=1))
    half = parse_slice(rp.resource_slice("n1", [rp.gpu_device(0, "GPU-a", "r0")], generation=2, count=2))
    assert counted_pools([old, half], DRIVERS) == {}  # gen 2 incomplete; gen 1 is outdated
    rest = parse_slice(
        rp.resource_slice("n1", [rp.gpu_device(1, "GPU-b", "r0")], generation=2, count=2, index=1)
    )
    pools = counted_pools([old, half, rest], DRIVERS)
    assert [g.uuid for g in node_devices("n1", pools["n1"]).gpus] == ["GPU-a", "GPU-b"]


def test_other_drivers_are_ignored() -> None:
    raw = rp.a100_node_slice("n1")
    raw["spec"]["driver"] = "dra.example.com"
    assert counted_pools([parse_slice(raw)], DRIVERS) == {}


def test_static_mig_devices_without_a_published_parent() -> None:
    parent = "GPU-mig-parent"
    devs = [rp.mig_device(0, parent, "3g.40gb", 9, s, 4, f"MIG-{s}") for s in (0, 4)]
    nd = node_devices("n1", counted_pools([parse_slice(rp.resource_slice("n1", devs))], DRIVERS)["n1"])
    assert [g.uuid for g in nd.gpus] == [parent]
    assert sorted((m.gpu, m.slot, m.start, m.profile) for m in nd.mig.values()) == [
        (0, 0, 0, "3g.40gb"),
        (0, 1, 4, "3g.40gb"),
    ]
    spec = node_spec(nd, NodeSpec("n1", None))
    mig = spec.gpus[0].mig
    assert mig is not None and [(i.profile.name, i.start) for i in mig] == [("3g.40gb", 0), ("3g.40gb", 4)]


def test_claim_parses_allocation_and_reservation() -> None:
    raw = rp.allocated(rp.claim("p1", count=2, pcie_constraint=True), "n1", ["gpu-0", "gpu-1"])
    c = parse_claim(raw)
    assert c.allocated and c.node == "n1" and c.reserved_for == ("pod-uid-p1",)
    assert [r.key for r in c.results] == [(rp.DRIVER, "n1", "gpu-0"), (rp.DRIVER, "n1", "gpu-1")]
    assert c.requests[0].alternatives[0].count == 2
    assert c.constraints[0].match_attribute == "resource.kubernetes.io/pcieRoot"
