"""What a kind of server looks like to Kubernetes: node presets, their GFD labels and their
``gpuplace.io/gpu-topology`` document (used by :mod:`gpuplace.localcluster.fake_nodes`).

Labels follow GPU Feature Discovery: ``nvidia.com/gpu.product`` / ``.memory`` (MiB) /
``.count`` / ``.family``, ``nvidia.com/mig.strategy``; under the *mixed* MIG strategy
``nvidia.com/gpu.count`` counts the whole GPUs (those exposed as ``nvidia.com/gpu``) and every MIG
profile gets ``nvidia.com/mig-<profile>.count`` / ``.memory``. The topology document (schema:
:mod:`scheduler.topology_doc`) carries deterministic GPU and MIG UUIDs, the MIG layout, and the NVLink
matrix of the server type from :mod:`placement_core.topology`.

Presets are plain data (:data:`PRESETS`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from placement_core import resolve_product
from placement_core.topology import preset as link_preset


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
