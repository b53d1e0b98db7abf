"""Fake GPU (and CPU) Nodes created through the API, looking like NVIDIA GFD-labelled nodes.

A Node is created with its status (Ready, allocatable ``cpu``, ``memory``, ``pods``,
``nvidia.com/gpu`` and MIG resources) and the label ``gpuplace.io/fake-node=true``, by which kwok
manages it (:mod:`gpuplace.localcluster.lifecycle`): kwok renews its Lease and runs the pods bound to
it. The TaintNodesByCondition admission plugin gives every new Node the ``node.kubernetes.io/not-ready``
taint until the node-lifecycle controller sees it Ready; :func:`wait_schedulable` waits for that.

Labels follow GPU Feature Discovery: ``nvidia.com/gpu.product`` / ``.memory`` (MiB) /
``.count`` / ``.family``, ``nvidia.com/mig.strategy``; under the *mixed* MIG strategy
``nvidia.com/gpu.count`` counts the whole GPUs (those exposed as ``nvidia.com/gpu``) and every MIG
profile gets ``nvidia.com/mig-<profile>.count`` / ``.memory`` and a resource
``nvidia.com/mig-<profile>``. GPU nodes carry the taint ``nvidia.com/gpu=present:NoSchedule``
(the toleration gpuplace's webhook adds). The ``gpuplace.io/gpu-topology`` annotation (schema:
:mod:`scheduler.topology_doc`) is optional: :func:`topology_document` writes one from the preset
(deterministic GPU and MIG UUIDs, MIG layout, and the NVLink matrix of the server type from
:mod:`placement_core.topology`); without it gpuplace falls back to the labels and the product's preset.

Presets are plain data (:data:`PRESETS`); :func:`demo_cluster` describes a mixed 16-node cluster.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.waiting import wait_until
from placement_core import resolve_product
from placement_core.topology import preset as link_preset

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
TOPOLOGY_ANNOTATION = "gpuplace.io/gpu-topology"
RACK_LABEL = "gpuplace.io/rack"
ZONE_LABEL = "topology.kubernetes.io/zone"
FAKE_NODE_LABEL = "gpuplace.io/fake-node"
KUBE_VERSION = "v1.36.3"
HTTP_NOT_FOUND = 404


@dataclass(frozen=True)
class NodePreset:
    """What a kind of server looks like to Kubernetes. ``gpu_count == 0`` means a CPU-only node.

    ``mig_layout[i]`` lists the MIG devices on GPU ``i`` (empty tuple: a whole GPU). Only used
    with ``mig_strategy="mixed"``; must be empty or have ``gpu_count`` entries.
    """

    key: str
    cpu: str
    memory: str
    pods: int = 110
    gpu_product: str | None = None
    gpu_memory_mib: int = 0
    gpu_count: int = 0
    gpu_family: str | None = None
    gpu_machine: str | None = None
    mig_strategy: str = "none"
    mig_layout: tuple[tuple[str, ...], ...] = ()
    mig_memory_mib: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    @property
    def whole_gpus(self) -> int:
        """GPUs exposed as ``nvidia.com/gpu`` (not MIG-partitioned)."""
        if not self.mig_layout:
            return self.gpu_count
        return sum(1 for devices in self.mig_layout if not devices)

    @property
    def mig_counts(self) -> dict[str, int]:
        return dict(Counter(profile for devices in self.mig_layout for profile in devices))


# Memory sizes are what nvidia-smi / NVML report (MiB); MIG sizes for A100-SXM4-80GB as NVML reports them.
_A100_80GB_MIG_MIB = {"1g.10gb": 9728, "1g.20gb": 19968, "2g.20gb": 19968, "3g.40gb": 40192, "7g.80gb": 80896}

PRESETS: dict[str, NodePreset] = {
    "hgx-h100": NodePreset(
        key="hgx-h100",
        cpu="224",
        memory="2000Gi",
        gpu_product="NVIDIA-H100-80GB-HBM3",
        gpu_memory_mib=81559,
        gpu_count=8,
        gpu_family="hopper",
        gpu_machine="HGX-H100",
    ),
    "dgx1-v100": NodePreset(
        key="dgx1-v100",
        cpu="80",
        memory="512Gi",
        gpu_product="Tesla-V100-SXM2-32GB",
        gpu_memory_mib=32768,
        gpu_count=8,
        gpu_family="volta",
        gpu_machine="DGX-1",
    ),
    # 8x A100-80GB, MIG mixed: GPUs 0-1 as 2x 3g.40gb, GPUs 2-3 as 7x 1g.10gb, GPUs 4-7 whole.
    "a100-80gb-mig": NodePreset(
        key="a100-80gb-mig",
        cpu="256",
        memory="1000Gi",
        gpu_product="NVIDIA-A100-SXM4-80GB",
        gpu_memory_mib=81920,
        gpu_count=8,
        gpu_family="ampere",
        gpu_machine="DGX-A100",
        mig_strategy="mixed",
        mig_layout=(
            ("3g.40gb", "3g.40gb"),
            ("3g.40gb", "3g.40gb"),
            ("1g.10gb",) * 7,
            ("1g.10gb",) * 7,
            (),
            (),
            (),
            (),
        ),
        mig_memory_mib=_A100_80GB_MIG_MIB,
    ),
    # 8x A40 PCIe with NVLink bridges joining pairs (0-1, 2-3, ...): no NVLink island above 2 GPUs.
    "a40-pairs": NodePreset(
        key="a40-pairs",
        cpu="128",
        memory="1000Gi",
        gpu_product="NVIDIA-A40",
        gpu_memory_mib=46068,
        gpu_count=8,
        gpu_family="ampere",
        gpu_machine="A40-8x-bridged",
    ),
    "l4": NodePreset(
        key="l4",
        cpu="16",
        memory="64Gi",
        gpu_product="NVIDIA-L4",
        gpu_memory_mib=23034,
        gpu_count=1,
        gpu_family="ada-lovelace",
        gpu_machine="g2-standard-16",
    ),
    "cpu": NodePreset(key="cpu", cpu="32", memory="128Gi"),
}


def gpu_labels(preset: NodePreset, *, clique: str | None = None) -> dict[str, str]:
    """GFD-style labels for a preset (empty for CPU-only presets)."""
    if not preset.is_gpu:
        return {}
    assert preset.gpu_product is not None
    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": preset.gpu_product,
        "nvidia.com/gpu.memory": str(preset.gpu_memory_mib),
        "nvidia.com/gpu.count": str(preset.whole_gpus),
        "nvidia.com/gpu.replicas": str(preset.whole_gpus),
        "nvidia.com/mig.strategy": preset.mig_strategy,
    }
    if preset.gpu_family:
        labels["nvidia.com/gpu.family"] = preset.gpu_family
    if preset.gpu_machine:
        labels["nvidia.com/gpu.machine"] = preset.gpu_machine
    if preset.mig_layout:
        labels["nvidia.com/mig.capable"] = "true"
    for profile, count in sorted(preset.mig_counts.items()):
        labels[f"nvidia.com/mig-{profile}.count"] = str(count)
        if profile in preset.mig_memory_mib:
            labels[f"nvidia.com/mig-{profile}.memory"] = str(preset.mig_memory_mib[profile])
    if clique:
        labels["nvidia.com/gpu.clique"] = clique
    return labels


_UUID_NAMESPACE = uuid.UUID("6f1f8a52-9c43-4d38-9a37-4a0b5c1de001")


def _uuid(prefix: str, *parts: object) -> str:
    return f"{prefix}-{uuid.uuid5(_UUID_NAMESPACE, '/'.join(map(str, parts)))}"


def topology_document(node_name: str, preset: NodePreset | str) -> dict[str, Any] | None:
    """A ``gpuplace.io/gpu-topology`` v1 document for a fake node of ``preset`` (None for CPU nodes).

    GPU and MIG UUIDs are derived from the node name (stable across runs), MIG instances are laid
    out at the lowest valid memory slices in the order of ``mig_layout``, and ``links`` is the
    NVLink matrix placement_core assumes for the product (NVSwitch all-to-all for HGX H100/A100,
    hybrid cube-mesh for DGX-1 V100, bridge pairs for A40, none for L4).
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if not p.is_gpu:
        return None
    assert p.gpu_product is not None
    model = resolve_product(p.gpu_product, p.gpu_memory_mib).model
    gpus: list[dict[str, Any]] = []
    for index in range(p.gpu_count):
        gpu: dict[str, Any] = {
            "index": index,
            "uuid": _uuid("GPU", node_name, index),
            "model": p.gpu_product,
            "memoryMiB": p.gpu_memory_mib,
            "healthy": True,
        }
        devices = p.mig_layout[index] if p.mig_layout else ()
        if devices:
            gpu["mig"] = _mig_entries(node_name, index, devices, model)
        gpus.append(gpu)
    links = link_preset(model.nvlink, p.gpu_count, model.name)
    return {"version": 1, "gpus": gpus, "links": links.astype(int).tolist()}


def _mig_entries(node_name: str, gpu: int, devices: tuple[str, ...], model: Any) -> list[dict[str, Any]]:
    used = 0  # bit mask of occupied memory slices
    out = []
    for slot, name in enumerate(devices):
        profile = model.mig_profile(name)
        if profile is None:
            raise ValueError(f"{model.name} has no MIG profile {name!r}")
        block = (1 << profile.size) - 1
        start = next((s for s in profile.starts if not used & (block << s)), None)
        if start is None:
            raise ValueError(f"MIG layout {devices} does not fit one {model.name}")
        used |= block << start
        out.append({"profile": name, "start": start, "uuid": _uuid("MIG", node_name, gpu, slot)})
    return out


def node_resources(preset: NodePreset) -> dict[str, str]:
    resources = {
        "cpu": preset.cpu,
        "memory": preset.memory,
        "pods": str(preset.pods),
        "ephemeral-storage": "1Ti",
    }
    if preset.is_gpu:
        resources[GPU_RESOURCE] = str(preset.whole_gpus)
        for profile, count in sorted(preset.mig_counts.items()):
            resources[f"nvidia.com/mig-{profile}"] = str(count)
    return resources


def node_manifest(
    name: str,
    preset: NodePreset | str,
    *,
    zone: str | None = None,
    rack: str | None = None,
    clique: str | None = None,
    topology: Mapping[str, Any] | bool | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taint_gpu_nodes: bool = True,
    time_slicing_replicas: int = 1,
) -> dict[str, Any]:
    """A complete v1 Node dict (spec and status) for ``preset``.

    ``topology``: a ``gpuplace.io/gpu-topology`` document, or True for :func:`topology_document`.
    ``time_slicing_replicas`` > 1: the GPUs are time-sliced as NVIDIA's device plugin and GFD show it
    (product ``-SHARED``, ``nvidia.com/gpu.sharing-strategy=time-slicing``, ``nvidia.com/gpu.replicas``,
    allocatable ``nvidia.com/gpu`` = GPUs × replicas); gpuplace places fractional shares only there.
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        FAKE_NODE_LABEL: "true",
        "gpuplace.io/preset": p.key,
        **gpu_labels(p, clique=clique),
    }
    if zone:
        all_labels[ZONE_LABEL] = zone
    if rack:
        all_labels[RACK_LABEL] = rack
    resources = node_resources(p)
    if time_slicing_replicas > 1 and p.is_gpu:
        all_labels["nvidia.com/gpu.product"] = f"{p.gpu_product}-SHARED"
        all_labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
        all_labels["nvidia.com/gpu.replicas"] = str(time_slicing_replicas)
        resources[GPU_RESOURCE] = str(p.whole_gpus * time_slicing_replicas)
    all_labels.update(labels or {})
    all_annotations = dict(annotations or {})
    if topology is True:
        topology = topology_document(name, p)
    if isinstance(topology, Mapping):
        all_annotations[TOPOLOGY_ANNOTATION] = json.dumps(topology, sort_keys=True, separators=(",", ":"))
    taints = []
    if p.is_gpu and taint_gpu_nodes:
        taints.append({"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for kind, status, reason in (
            ("Ready", "True", "KubeletReady"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
        )
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "annotations": all_annotations},
        "spec": {"taints": taints},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": f"fake-{name}",
                "containerRuntimeVersion": "fake://0",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": "",
                "kubeletVersion": KUBE_VERSION,
                "machineID": f"fake-{name}",
                "operatingSystem": "linux",
                "osImage": "fake",
                "systemUUID": f"fake-{name}",
            },
        },
    }


async def create_node(api: client.ApiClient, manifest: Mapping[str, Any]) -> client.V1Node:
    """Create a Node; if the apiserver dropped the status, set it through the status subresource."""
    core = client.CoreV1Api(api)
    body: Any = dict(manifest)
    created = await core.create_node(body)
    wanted = manifest.get("status", {})
    allocatable = created.status.allocatable if created.status else None
    if wanted and allocatable != wanted.get("allocatable"):
        patch: Any = {"status": wanted}  # a dict body is sent as a strategic merge patch
        created = await core.patch_node_status(created.metadata.name, patch)
    return created


async def create_fake_node(
    api: client.ApiClient, name: str, preset: NodePreset | str, **kwargs: Any
) -> client.V1Node:
    """``create_node(api, node_manifest(name, preset, **kwargs))``."""
    return await create_node(api, node_manifest(name, preset, **kwargs))


async def create_nodes(
    api: client.ApiClient, manifests: Iterable[Mapping[str, Any]], *, wait: bool = True
) -> list[str]:
    """Create the Nodes; with ``wait``, return once all of them are schedulable (:func:`wait_schedulable`)."""
    names = []
    for manifest in manifests:
        node = await create_node(api, manifest)
        names.append(node.metadata.name)
    if wait:
        await wait_schedulable(api, names)
    return names


CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def schedulable(node: Any) -> bool:
    """Ready, and without the taints the node-lifecycle controller keeps on nodes that are not."""
    conditions = (node.status.conditions if node.status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    taints = (node.spec.taints if node.spec else None) or []
    return ready and not any(t.key in CONDITION_TAINTS for t in taints)


async def wait_schedulable(api: client.ApiClient, names: Iterable[str], *, within: float = 60.0) -> None:
    """Wait until every named Node is :func:`schedulable` (new Nodes: until the not-ready taint is gone)."""
    core = client.CoreV1Api(api)
    wanted = set(names)

    async def done() -> bool:
        nodes = await core.list_node()
        ok = {n.metadata.name for n in nodes.items if schedulable(n)}
        return wanted <= ok

    await wait_until(done, within=within, what=f"nodes {sorted(wanted)[:5]}... to be Ready without not-ready taints")


async def delete_nodes(api: client.ApiClient, names: Iterable[str]) -> None:
    core = client.CoreV1Api(api)
    for name in names:
        try:
            await core.delete_node(name)
        except ApiException as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise


def demo_cluster(prefix: str = "", *, topology: bool = True) -> list[dict[str, Any]]:
    """Manifests of a mixed 16-node cluster over two zones and four racks.

    zone-a: rack a1 = 4x HGX H100 sharing one NVLink clique label, rack a2 = 2x A100-80GB MIG
    (mixed) + 2x L4; zone-b: rack b1 = 2x DGX-1 V100 + 2x L4, rack b2 = 4 CPU-only nodes.
    GPU nodes carry a ``gpuplace.io/gpu-topology`` annotation unless ``topology=False``.
    """
    layout: list[tuple[str, str, str, str, str | None]] = [
        *(
            (f"h100-{i}", "hgx-h100", "zone-a", "a1", "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1")
            for i in range(4)
        ),
        *((f"a100mig-{i}", "a100-80gb-mig", "zone-a", "a2", None) for i in range(2)),
        *((f"l4-{i}", "l4", "zone-a", "a2", None) for i in range(2)),
        *((f"v100-{i}", "dgx1-v100", "zone-b", "b1", None) for i in range(2)),
        *((f"l4-{i}", "l4", "zone-b", "b1", None) for i in range(2, 4)),
        *((f"cpu-{i}", "cpu", "zone-b", "b2", None) for i in range(4)),
    ]
    return [
        node_manifest(f"{prefix}{name}", preset, zone=zone, rack=rack, clique=clique, topology=topology)
        for name, preset, zone, rack, clique in layout
    ]


async def create_demo_cluster(api: client.ApiClient, prefix: str = "") -> list[str]:
    """Create :func:`demo_cluster` nodes; returns their names."""
    return await create_nodes(api, demo_cluster(prefix))
