"""The DRA harness publishes what NVIDIA's driver v25.12.0 publishes (names, attribute types, capacities, one
slice per node owned by the Node), and gpuplace's own parser (scheduler.dra) reads it as the node's GPUs."""

from __future__ import annotations

from gpuplace.localcluster import dra_slices
from gpuplace.localcluster.fake_nodes import GPU_RESOURCE
from scheduler.dra.inventory import node_devices
from scheduler.dra.objects import parse_slice

NODE = {"metadata": {"name": "n1", "uid": "uid-n1"}}


def test_whole_gpus_are_gpu_minor_with_the_driver_attributes() -> None:
    devices = dra_slices.devices("n1", "hgx-h100")
    assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(8)]
    gpu = devices[0]
    attrs = gpu["attributes"]
    assert attrs["type"] == {"string": "gpu"}
    assert attrs["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert attrs["architecture"] == {"string": "Hopper"}
    assert attrs["cudaComputeCapability"] == {"version": "9.0.0"}  # semver.MustParse("9.0").String()
    assert attrs["driverVersion"] == {"version": dra_slices.DRIVER_VERSION}
    assert attrs["cudaDriverVersion"] == {"version": "13.0.0"}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert attrs["resource.kubernetes.io/pcieRoot"]["string"].startswith("pci0000:")
    assert gpu["capacity"] == {"memory": {"value": str(81559 * 2**20)}}
    roots = [d["attributes"][dra_slices.PCIE_ROOT]["string"] for d in devices]
    assert [roots.index(r) for r in roots] == [0, 0, 2, 2, 4, 4, 6, 6]  # two GPUs per root complex


def test_a_mig_gpu_is_announced_through_its_mig_devices_only() -> None:
    devices = dra_slices.devices("n1", "a100-80gb-mig")  # GPUs 0-1: 2x 3g.40gb, 2-3: 7x 1g.10gb, 4-7 whole
    names = [d["name"] for d in devices]
    assert "gpu-0" not in names and "gpu-4" in names
    assert names[:2] == ["gpu-0-mig-3g40gb-9-0", "gpu-0-mig-3g40gb-9-4"]
    assert "gpu-2-mig-1g10gb-19-6" in names
    mig = devices[0]
    assert mig["attributes"]["type"] == {"string": "mig"}
    assert mig["attributes"]["profile"] == {"string": "3g.40gb"}
    assert mig["attributes"]["parentUUID"] == {"string": dra_slices.gpu_uuid("n1", 0)}
    assert {k for k in mig["capacity"] if k.startswith("memorySlice")} == {f"memorySlice{i}" for i in range(4)}


def test_one_slice_per_node_owned_by_the_node() -> None:
    body = dra_slices.resource_slice(NODE, dra_slices.devices("n1", "l4"))
    assert body["metadata"]["generateName"] == "n1-gpu.nvidia.com-"
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-n1", "controller": True,
    }]  # fmt: skip
    assert body["spec"]["pool"] == {"name": "n1", "generation": 1, "resourceSliceCount": 1}
    assert body["spec"]["nodeName"] == "n1" and body["spec"]["driver"] == "gpu.nvidia.com"


def test_device_classes_are_nvidias() -> None:
    gpu, mig = dra_slices.device_classes()
    assert gpu["spec"]["extendedResourceName"] == GPU_RESOURCE
    assert "device.attributes['gpu.nvidia.com'].type == 'gpu'" in gpu["spec"]["selectors"][0]["cel"]["expression"]
    assert mig["metadata"]["name"] == "mig.nvidia.com" and "extendedResourceName" not in mig["spec"]


def test_a_dra_node_has_no_device_plugin_gpus() -> None:
    node = dra_slices.dra_node_manifest("n1", "a100-80gb-mig")
    for section in ("capacity", "allocatable"):
        assert not [k for k in node["status"][section] if k.startswith("nvidia.com/")]
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"


def test_gpuplace_reads_the_harness_slices_as_the_nodes_gpus() -> None:
    body = dra_slices.resource_slice(NODE, dra_slices.devices("n1", "a100-80gb-mig"))
    body["metadata"]["name"] = "n1-gpu.nvidia.com-abcde"
    devices = node_devices("n1", [parse_slice(body)])
    assert [g.minor for g in devices.gpus] == list(range(8))
    assert devices.uuids() == tuple(dra_slices.gpu_uuid("n1", i) for i in range(8))
    assert len(devices.mig) == 2 + 2 + 7 + 7
    assert devices.pcie_root(0) == devices.pcie_root(1) != devices.pcie_root(2)
