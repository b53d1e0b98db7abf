"""Node JSON → NodeSpec: GFD labels, allocatable, the topology annotation, and odd nodes that must not crash."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from scheduler.nodeinv import NodeRules, node_inventory
from scheduler.topology_doc import parse_topology
from tests.scheduler import objects as o

RULES = NodeRules()


def topo(n: int = 2, **gpu: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "gpus": [{"index": i, "uuid": f"GPU-{i}", **gpu} for i in range(n)],
        "links": [[0 if i == j else 4 for j in range(n)] for i in range(n)],
    }


def test_gfd_labels_and_presets() -> None:
    inv = node_inventory(o.node("h", cpu="100", memory="10Gi"), RULES)
    s = inv.spec
    assert s.model is not None and s.model.name == "H100-80GB"
    assert len(s.gpus) == 8 and all(g.healthy and g.memory_mib == 81559 for g in s.gpus)
    assert (s.cpu_milli, s.memory_mib, s.links) == (100_000, 10240, None)  # links: the NVSwitch preset
    assert inv.source == "labels" and inv.warning is None


def test_cpu_node_and_cordon_is_left_to_kube_scheduler() -> None:
    inv = node_inventory(o.node("c", product="", gpus=0, unschedulable=True), RULES)
    assert inv.spec.model is None and inv.spec.gpus == [] and inv.spec.schedulable  # NodeUnschedulable's job


def test_withdrawn_gpus_are_unhealthy() -> None:
    n = o.node("h")
    n["status"]["allocatable"]["nvidia.com/gpu"] = "6"
    assert [g.healthy for g in node_inventory(n, RULES).spec.gpus] == [True] * 6 + [False] * 2


def test_time_sliced_node_counts_physical_gpus() -> None:
    n = o.node(
        "t",
        product="NVIDIA-A10-SHARED",
        gpus=4,
        memory_mib=23028,
        labels={"nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing"},
    )
    n["metadata"]["labels"].pop("nvidia.com/gpu.count")
    n["status"]["allocatable"]["nvidia.com/gpu"] = "16"
    assert len(node_inventory(n, RULES).spec.gpus) == 4


def test_mig_mixed_packs_instances_onto_gpus() -> None:
    n = o.node("a", product="NVIDIA-A100-SXM4-80GB", gpus=4, mig={"3g.40gb": 4, "1g.10gb": 14})
    gpus = node_inventory(n, RULES).spec.gpus
    layout = [tuple(sorted(i.profile.name for i in g.mig)) if g.mig is not None else None for g in gpus]
    assert layout == [("3g.40gb",) * 2] * 2 + [("1g.10gb",) * 7] * 2 + [None] * 4


def test_mig_single_strategy_devices_are_small_gpus() -> None:
    n = o.node("s", product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", gpus=14, memory_mib=4864)
    s = node_inventory(n, RULES).spec
    assert len(s.gpus) == 14 and s.gpus[0].memory_mib == 4864 and s.gpus[0].mig is None
    assert s.links is not None and not np.asarray(s.links).any()


def test_topology_annotation_wins() -> None:
    doc = topo(4, model="NVIDIA-A100-SXM4-80GB", memoryMiB=80000)
    doc["gpus"][3]["healthy"] = False
    doc["gpus"][0]["mig"] = [
        {"profile": "3g.40gb", "start": 0, "uuid": "MIG-0"},
        {"profile": "3g.40gb", "start": 4},
    ]
    inv = node_inventory(o.node("a", topology=doc), RULES)
    s = inv.spec
    assert inv.source == "annotation" and s.model is not None and s.model.name == "A100-80GB"
    assert [g.healthy for g in s.gpus] == [True, True, True, False]
    assert s.gpus[0].mig is not None and len(s.gpus[0].mig) == 2
    assert np.asarray(s.links)[0, 1] == 4
    assert inv.uuids_for((1, 2), ()) == ["GPU-1", "GPU-2"]
    assert inv.uuids_for((), ((0, 0),)) == ["MIG-0"]
    assert inv.uuids_for((), ((0, 1),)) == []  # not every UUID known → none


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        json.dumps({"version": 2, "gpus": [{"index": 0}]}),
        json.dumps({"version": 1, "gpus": []}),
        json.dumps({"version": 1, "gpus": [{"index": 1}]}),
        json.dumps({"version": 1, "gpus": [{"index": 0}, {"index": 1}], "links": [[0, 1], [2, 0]]}),
        json.dumps({"version": 1, "gpus": [{"index": 0}], "links": [[1]]}),
        json.dumps({"version": 1, "gpus": [{"index": 0, "model": "A100"}, {"index": 1, "model": "H100"}]}),
        json.dumps({"version": 1, "gpus": [{"index": 0, "mig": [{"profile": "9g.99gb", "start": 0}]}]}),
        json.dumps({"version": 1, "gpus": [{"index": 0, "mig": [{"profile": "3g.40gb", "start": 2}]}]}),
        json.dumps({"version": 1, "gpus": [{"index": i} for i in range(17)]}),
    ],
)
def test_bad_annotation_falls_back_to_labels_with_a_warning(bad: str) -> None:
    inv = node_inventory(o.node("h", topology=bad), RULES)
    assert inv.source == "labels" and len(inv.spec.gpus) == 8
    assert inv.warning is not None and "gpuplace.io/gpu-topology" in inv.warning


def test_nonsense_labels_make_a_gpu_less_node() -> None:
    n = o.node("h")
    n["status"]["allocatable"]["nvidia.com/gpu"] = "lots"
    n["status"]["allocatable"]["cpu"] = "??"
    inv = node_inventory(n, RULES)
    assert inv.spec.gpus == [] and inv.warning is not None


def test_unknown_fields_are_ignored_in_v1_documents() -> None:
    doc = parse_topology(json.dumps({"version": 1, "gpus": [{"index": 0, "numa": 1}], "nvswitches": 4}))
    assert len(doc.gpus) == 1
