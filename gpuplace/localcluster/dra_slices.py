"""ResourceSlices and DeviceClasses exactly as NVIDIA's DRA driver publishes them, for fake nodes.

Copied from kubernetes-sigs/dra-driver-nvidia-gpu (formerly NVIDIA/k8s-dra-driver-gpu), pinned to
**v25.12.0** (commit 0882da8720c28763137e0987778ec476ec4cf8df):

- `cmd/gpu-kubelet-plugin/driver.go`, `publishResources`: with the DynamicMIG feature gate off (its
  default, `pkg/featuregates/featuregates.go`) the driver publishes ONE ResourceSlice per node: pool name =
  node name, `nodeName` set, every allocatable device in it. Through the kubelet plugin helper
  (k8s.io/dynamic-resource-allocation/resourceslice, `syncPool`) the slice is named
  `generateName: <node>-gpu.nvidia.com-`, owned by the Node, and its pool has `generation` and
  `resourceSliceCount: 1`.
- `cmd/gpu-kubelet-plugin/nvlib.go`, `GetPerGpuAllocatableDevices`: a GPU without MIG mode is announced
  whole; a GPU in MIG mode announces only its configured (static) MIG devices, not itself.
- `cmd/gpu-kubelet-plugin/deviceinfo.go` + `partitions.go`: a whole GPU is `gpu-<minor>` with attributes
  `type: gpu`, `uuid`, `productName`, `brand`, `architecture`, `cudaComputeCapability` / `driverVersion` /
  `cudaDriverVersion` (semver versions: "9.0" → "9.0.0"), `resource.kubernetes.io/pciBusID`,
  `resource.kubernetes.io/pcieRoot` (`pci<domain>:<bus>` of the root complex, from sysfs) and capacity
  `memory` (bytes); a MIG device is `gpu-<minor>-mig-<profile without dots>-<GI profile id>-<placement
  start>` (`mig.go`, `ToCanonicalName`) with `type: mig`, `uuid`, `parentUUID`, `profile`, the parent's
  product attributes and PCI IDs, and capacities `multiprocessors`, `copyEngines`, `decoders`, `encoders`,
  `jpegEngines`, `ofaEngines`, `memory` and one `memorySlice<i>` per occupied memory slice.
- `deployments/helm/nvidia-dra-driver-gpu/templates/deviceclass-{gpu,mig}.yaml`: DeviceClasses
  `gpu.nvidia.com` (with `extendedResourceName: nvidia.com/gpu` on resource.k8s.io/v1, so a pod's
  `nvidia.com/gpu: 1` can be served by DRA) and `mig.nvidia.com`.

Not reproduced: the partitionable layout (KEP 4815 shared counters) that v25.12.0 publishes only under
the alpha DynamicMIG gate, the optional `addressingMode` attribute (coherent-memory systems only), and
VFIO passthrough devices (PassthroughSupport gate).

What is made up (no NVML here): UUIDs (stable per node name, as in fake_nodes), PCI bus IDs, and which
GPUs share a PCIe root complex (:data:`EIGHT_GPU_ROOTS`: two per root, as on DGX/HGX H100 boards whose
GPU pairs sit behind one PCIe switch each). MIG engine counts are NVML's GI profile info for A100/H100
80GB.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.fake_nodes import GPU_RESOURCE, PRESETS, NodePreset, node_manifest

DRIVER = "gpu.nvidia.com"
DRIVER_RELEASE = "v25.12.0"  # kubernetes-sigs/dra-driver-nvidia-gpu, the layout copied here
RESOURCE_API = "resource.k8s.io/v1"
GPU_CLASS = "gpu.nvidia.com"
MIG_CLASS = "mig.nvidia.com"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
DRIVER_VERSION = "580.95.5"
CUDA_DRIVER_VERSION = "13.0"
EIGHT_GPU_ROOTS = (0, 0, 1, 1, 2, 2, 3, 3)  # GPU minor → PCIe root complex index
_UUID_NAMESPACE = uuid.UUID("6f1f8a52-9c43-4d38-9a37-4a0b5c1de001")  # fake_nodes' namespace


@dataclass(frozen=True)
class Product:
    """What NVML reports for one GPU product (name, brand, architecture, compute capability, memory)."""

    name: str
    brand: str
    architecture: str
    compute_capability: str
    memory_mib: int


@dataclass(frozen=True)
class MigShape:
    """NVML's GPU-instance profile info for one MIG profile (nvml.GpuInstanceProfileInfo)."""

    profile_id: int
    slices: int  # placement size in memory slices
    multiprocessors: int
    copy_engines: int
    decoders: int
    encoders: int
    jpeg: int
    ofa: int
    memory_mib: int


#: fake_nodes presets → NVML product. GFD's label is NVML's name with spaces as dashes.
PRODUCTS: dict[str, Product] = {
    "hgx-h100": Product("NVIDIA H100 80GB HBM3", "Nvidia", "Hopper", "9.0", 81559),
    "a100-80gb-mig": Product("NVIDIA A100-SXM4-80GB", "Nvidia", "Ampere", "8.0", 81920),
    "l4": Product("NVIDIA L4", "Nvidia", "Ada Lovelace", "8.9", 23034),
}

#: A100-SXM4-80GB GI profiles as NVML reports them (H100 80GB has the same ids and slice sizes).
MIG_SHAPES: dict[str, MigShape] = {
    "1g.10gb": MigShape(19, 1, 14, 1, 0, 0, 0, 0, 9728),
    "1g.20gb": MigShape(15, 2, 14, 1, 1, 0, 1, 0, 19968),
    "2g.20gb": MigShape(14, 2, 28, 2, 1, 0, 0, 0, 19968),
    "3g.40gb": MigShape(9, 4, 42, 3, 2, 0, 0, 0, 40192),
    "4g.40gb": MigShape(5, 4, 56, 4, 2, 0, 0, 0, 40192),
    "7g.80gb": MigShape(0, 8, 98, 7, 5, 0, 1, 1, 80896),
}
_MIG_STARTS = {1: range(7), 2: range(0, 6, 2), 4: (0, 4), 8: (0,)}


def _uuid(prefix: str, *parts: object) -> str:
    return f"{prefix}-{uuid.uuid5(_UUID_NAMESPACE, '/'.join(map(str, parts)))}"


def _string(value: str) -> dict[str, str]:
    return {"string": value}


def _version(value: str) -> dict[str, str]:
    """A semver version attribute as the driver writes it (semver.MustParse(v).String(): "9.0" → "9.0.0")."""
    parts = value.split(".")
    return {"version": ".".join([*parts, "0", "0"][:3])}


def _quantity(value: int) -> dict[str, str]:
    return {"value": str(value)}


def pcie_root(root: int) -> str:
    """`pci<domain>:<bus>` of root complex number `root` (the same names on every node, as on identical boards)."""
    return f"pci0000:{0x15 + 0x20 * root:02x}"


def _gpu_attributes(product: Product, bus_id: str, root: str) -> dict[str, Any]:
    return {
        "productName": _string(product.name),
        "brand": _string(product.brand),
        "architecture": _string(product.architecture),
        "cudaComputeCapability": _version(product.compute_capability),
        "driverVersion": _version(DRIVER_VERSION),
        "cudaDriverVersion": _version(CUDA_DRIVER_VERSION),
        PCI_BUS_ID: _string(bus_id),
        PCIE_ROOT: _string(root),
    }


def gpu_uuid(node_name: str, minor: int) -> str:
    """The UUID fake_nodes.topology_document gives GPU `minor` of `node_name` (one identity per GPU)."""
    return _uuid("GPU", node_name, minor)


def devices(
    node_name: str,
    preset: str,
    *,
    roots: Sequence[int] | None = None,
    mig_layout: Sequence[Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """The devices NVIDIA's driver announces for a node of `preset`: whole GPUs and configured MIG devices.

    `roots[minor]`: the GPU's PCIe root complex (default :data:`EIGHT_GPU_ROOTS`, or one root per GPU for
    smaller boards). `mig_layout[minor]`: MIG profiles configured on that GPU (default the preset's); a GPU
    with any is announced through its MIG devices only, laid out at the lowest free memory slices.
    """
    product = PRODUCTS[preset]
    node = PRESETS[preset]
    count = node.gpu_count
    roots = tuple(roots) if roots is not None else (EIGHT_GPU_ROOTS if count == 8 else tuple(range(count)))
    layout = [tuple(m) for m in (mig_layout if mig_layout is not None else node.mig_layout or [()] * count)]
    out: list[dict[str, Any]] = []
    for minor in range(count):
        parent = gpu_uuid(node_name, minor)
        bus_id = f"0000:{0x18 + 0x10 * minor:02x}:00.0"
        attributes = _gpu_attributes(product, bus_id, pcie_root(roots[minor]))
        if not layout[minor]:
            out.append(
                {
                    "name": f"gpu-{minor}",
                    "attributes": {"type": _string("gpu"), "uuid": _string(parent), **attributes},
                    "capacity": {"memory": _quantity(product.memory_mib * 2**20)},
                }
            )
            continue
        used: set[int] = set()
        for slot, profile in enumerate(layout[minor]):
            shape = MIG_SHAPES[profile]
            start = next(s for s in _MIG_STARTS[shape.slices] if not used & set(range(s, s + shape.slices)))
            used |= set(range(start, start + shape.slices))
            capacity = {
                "multiprocessors": _quantity(shape.multiprocessors),
                "copyEngines": _quantity(shape.copy_engines),
                "decoders": _quantity(shape.decoders),
                "encoders": _quantity(shape.encoders),
                "jpegEngines": _quantity(shape.jpeg),
                "ofaEngines": _quantity(shape.ofa),
                "memory": _quantity(shape.memory_mib * 2**20),
                **{f"memorySlice{i}": _quantity(1) for i in range(start, start + shape.slices)},
            }
            out.append(
                {
                    "name": f"gpu-{minor}-mig-{profile.replace('.', '')}-{shape.profile_id}-{start}",
                    "attributes": {
                        "type": _string("mig"),
                        "uuid": _string(_uuid("MIG", node_name, minor, slot)),
                        "parentUUID": _string(parent),
                        "profile": _string(profile),
                        **attributes,
                    },
                    "capacity": capacity,
                }
            )
    return out


def resource_slice(
    node: Mapping[str, Any], device_list: list[dict[str, Any]], *, generation: int = 1
) -> dict[str, Any]:
    """The one ResourceSlice the driver's kubelet plugin publishes for `node` (a Node as read back, with uid)."""
    name = node["metadata"]["name"]
    return {
        "apiVersion": RESOURCE_API,
        "kind": "ResourceSlice",
        "metadata": {
            "generateName": f"{name}-{DRIVER}-",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": node["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "driver": DRIVER,
            "nodeName": name,
            "pool": {"name": name, "generation": generation, "resourceSliceCount": 1},
            "devices": device_list,
        },
    }


def device_classes() -> list[dict[str, Any]]:
    """NVIDIA's DeviceClasses `gpu.nvidia.com` (extendedResourceName nvidia.com/gpu) and `mig.nvidia.com`."""

    def cel(kind: str) -> list[dict[str, Any]]:
        return [
            {
                "cel": {
                    "expression": f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == '{kind}'"
                }
            }
        ]

    return [
        {
            "apiVersion": RESOURCE_API,
            "kind": "DeviceClass",
            "metadata": {"name": GPU_CLASS},
            "spec": {"selectors": cel("gpu"), "extendedResourceName": GPU_RESOURCE},
        },
        {
            "apiVersion": RESOURCE_API,
            "kind": "DeviceClass",
            "metadata": {"name": MIG_CLASS},
            "spec": {"selectors": cel("mig")},
        },
    ]


def dra_node_manifest(name: str, preset: NodePreset | str, **kwargs: Any) -> dict[str, Any]:
    """A fake node whose GPUs are served by the DRA driver instead of the device plugin: GFD labels as
    usual, no `nvidia.com/gpu` / `nvidia.com/mig-*` in capacity or allocatable."""
    node = node_manifest(name, preset, **kwargs)
    for section in ("capacity", "allocatable"):
        resources = node["status"][section]
        for key in [k for k in resources if k == GPU_RESOURCE or k.startswith("nvidia.com/mig-")]:
            del resources[key]
    return node


async def ensure_device_classes(api: client.ApiClient) -> None:
    """Create NVIDIA's DeviceClasses unless they exist (cluster-scoped: shared by every test)."""
    objects = client.CustomObjectsApi(api)
    for device_class in device_classes():
        try:
            await objects.create_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", copy.deepcopy(device_class)
            )
        except ApiException as exc:
            if exc.status != 409:
                raise


async def publish(api: client.ApiClient, node_name: str, device_list: list[dict[str, Any]]) -> str:
    """Publish the node's ResourceSlice as the driver's kubelet plugin does; returns the slice's name."""
    node = await client.CoreV1Api(api).read_node(node_name)
    body = resource_slice({"metadata": {"name": node_name, "uid": node.metadata.uid}}, device_list)
    created = await client.CustomObjectsApi(api).create_cluster_custom_object(
        "resource.k8s.io", "v1", "resourceslices", body
    )
    return str(created["metadata"]["name"])
