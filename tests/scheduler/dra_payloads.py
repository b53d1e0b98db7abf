"""resource.k8s.io/v1 objects as kube-apiserver v1.36 returns them (GET .../resourceslices,
.../resourceclaims), shaped after what NVIDIA's driver publishes (sigs.k8s.io/dra-driver-nvidia-gpu,
cmd/gpu-kubelet-plugin deviceinfo.go `GetDevice`, CommonAttributesMig) and what kube-scheduler's
DynamicResources plugin writes in PreBind (status.allocation + status.reservedFor). managedFields are
left out; everything else is as served (quantities as strings, versions as semver strings)."""

from __future__ import annotations

import copy
from typing import Any

DRIVER = "gpu.nvidia.com"


def gpu_device(
    minor: int, uuid: str, pcie_root: str, *, product: str = "NVIDIA A100-SXM4-80GB", memory: str = "80Gi"
) -> dict[str, Any]:
    return {
        "name": f"gpu-{minor}",
        "attributes": {
            "architecture": {"string": "Ampere"},
            "brand": {"string": "Nvidia"},
            "cudaComputeCapability": {"version": "8.0.0"},
            "cudaDriverVersion": {"version": "12.8.0"},
            "driverVersion": {"version": "570.124.6"},
            "productName": {"string": product},
            "resource.kubernetes.io/pciBusID": {"string": f"0000:{0x10 + minor * 0x10:02x}:00.0"},
            "resource.kubernetes.io/pcieRoot": {"string": pcie_root},
            "type": {"string": "gpu"},
            "uuid": {"string": uuid},
        },
        "capacity": {"memory": {"value": memory}},
    }


def mig_device(
    parent_minor: int,
    parent_uuid: str,
    profile: str,
    profile_id: int,
    start: int,
    size: int,
    uuid: str,
    *,
    pcie_root: str = "pci0000:00",
) -> dict[str, Any]:
    cap: dict[str, Any] = {
        "copyEngines": {"value": "1"},
        "decoders": {"value": "0"},
        "encoders": {"value": "0"},
        "jpegEngines": {"value": "0"},
        "memory": {"value": "10240Mi"},
        "multiprocessors": {"value": "14"},
        "ofaEngines": {"value": "0"},
    }
    for i in range(start, start + size):
        cap[f"memorySlice{i}"] = {"value": "1"}
    return {
        "name": f"gpu-{parent_minor}-mig-{profile}-{profile_id}-{start}",
        "attributes": {
            "architecture": {"string": "Ampere"},
            "brand": {"string": "Nvidia"},
            "cudaComputeCapability": {"version": "8.0.0"},
            "driverVersion": {"version": "570.124.6"},
            "parentUUID": {"string": parent_uuid},
            "productName": {"string": "NVIDIA A100-SXM4-80GB"},
            "profile": {"string": profile},
            "resource.kubernetes.io/pcieRoot": {"string": pcie_root},
            "type": {"string": "mig"},
            "uuid": {"string": uuid},
        },
        "capacity": cap,
    }


def uuid(node: str, minor: int) -> str:
    n = sum(map(ord, node)) % 0xFFFF
    return f"GPU-{n:04x}{minor:04x}-8f4e-4d1c-9e7a-{minor:012x}"


def resource_slice(
    node: str,
    devices: list[dict[str, Any]],
    *,
    generation: int = 1,
    count: int = 1,
    index: int = 0,
    counters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "driver": DRIVER,
        "nodeName": node,
        "pool": {"generation": generation, "name": node, "resourceSliceCount": count},
    }
    if counters is not None:
        spec["sharedCounters"] = counters
    else:
        spec["devices"] = devices
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "generateName": f"{node}-{DRIVER}-",
            "generation": 1,
            "name": f"{node}-{DRIVER}-{index:05d}",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "controller": True,
                    "kind": "Node",
                    "name": node,
                    "uid": f"node-uid-{node}",
                }
            ],
            "resourceVersion": str(1000 + index),
            "uid": f"slice-uid-{node}-{generation}-{index}",
        },
        "spec": spec,
    }


def a100_node_slice(
    node: str, *, roots: tuple[str, ...] = ("pci0000:00",) * 4 + ("pci0000:80",) * 4, **kw: Any
) -> dict[str, Any]:
    """8 × A100-SXM4-80GB, two PCIe roots of 4 GPUs (as on a DGX A100's two CPU sockets)."""
    return resource_slice(node, [gpu_device(i, uuid(node, i), r) for i, r in enumerate(roots)], **kw)


def claim(
    name: str,
    *,
    namespace: str = "default",
    uid: str | None = None,
    count: int = 1,
    device_class: str = "gpu.nvidia.com",
    selectors: tuple[str, ...] = (),
    pcie_constraint: bool = False,
    mode: str = "ExactCount",
    admin: bool = False,
    capacity: dict[str, str] | None = None,
    first_available: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    exactly: dict[str, Any] = {"allocationMode": mode, "deviceClassName": device_class}
    if mode == "ExactCount":
        exactly["count"] = count
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    if admin:
        exactly["adminAccess"] = True
    if capacity:
        exactly["capacity"] = {"requests": capacity}
    request: dict[str, Any] = {"name": "gpu"}
    if first_available is not None:
        request["firstAvailable"] = first_available
    else:
        request["exactly"] = exactly
    devices: dict[str, Any] = {"requests": [request]}
    if pcie_constraint:
        devices["constraints"] = [{"matchAttribute": "resource.kubernetes.io/pcieRoot", "requests": ["gpu"]}]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "annotations": {"resource.kubernetes.io/pod-claim-name": "gpu"},
            "creationTimestamp": "2026-12-01T10:05:00Z",
            "generateName": f"{name}-gpu-",
            "name": f"{name}-gpu-x7k2p",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": "Pod",
                    "name": name,
                    "uid": f"pod-uid-{name}",
                }
            ],
            "resourceVersion": "2001",
            "uid": uid or f"claim-uid-{name}",
        },
        "spec": {"devices": devices},
        "status": {},
    }


def allocated(
    obj: dict[str, Any],
    node: str,
    devices: list[str],
    *,
    pod: str | None = None,
    request: str = "gpu",
    admin: bool = False,
    consumed: dict[str, str] | None = None,
    share_ids: list[str] | None = None,
) -> dict[str, Any]:
    """`obj` after kube-scheduler's PreBind: allocation on `node` and reserved for its pod."""
    obj = copy.deepcopy(obj)
    results = []
    for i, d in enumerate(devices):
        r: dict[str, Any] = {"device": d, "driver": DRIVER, "pool": node, "request": request}
        if admin:
            r["adminAccess"] = True
        if consumed is not None:
            r["consumedCapacity"] = consumed
        if share_ids is not None:
            r["shareID"] = share_ids[i]
        results.append(r)
    pod = pod or obj["metadata"]["ownerReferences"][0]["name"]
    obj["status"] = {
        "allocation": {
            "allocationTimestamp": "2026-12-01T10:05:02Z",
            "devices": {"results": results},
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            },
        },
        "reservedFor": [{"name": pod, "resource": "pods", "uid": f"pod-uid-{pod}"}],
    }
    obj["metadata"]["resourceVersion"] = "2002"
    return obj


def pod_with_claim(
    name: str, claim_name: str, *, namespace: str = "default", node: str = "", template: bool = True
) -> dict[str, Any]:
    """A pod referencing one claim by template (status.resourceClaimStatuses names the generated claim,
    as kube-controller-manager's resourceclaim controller writes it) or directly by name."""
    ref: dict[str, Any] = {"name": "gpu"}
    if template:
        ref["resourceClaimTemplateName"] = "one-gpu"
    else:
        ref["resourceClaimName"] = claim_name
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"pod-uid-{name}",
            "resourceVersion": "3001",
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
            "resourceClaims": [ref],
            "priority": 0,
        },
        "status": {"phase": "Pending"},
    }
    if node:
        pod["spec"]["nodeName"] = node
    if template:
        pod["status"]["resourceClaimStatuses"] = [{"name": "gpu", "resourceClaimName": claim_name}]
    return pod
