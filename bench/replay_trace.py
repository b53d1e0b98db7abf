"""What bench/cluster_replay.py replays: an openb slice, its workload (events) and its Node/Pod manifests.

The slice: ``n_nodes`` GPU nodes of openb_node_list_gpu_node.csv sampled per GPU model in proportion
(stratified), and the same fraction of openb_pod_list_default.csv's pods, sampled.

Both arms get the SAME nodes: every GPU is time-sliced the way NVIDIA's device plugin does it
(``sharing.timeSlicing.resources[].replicas``): allocatable ``nvidia.com/gpu`` = GPUs × replicas, GFD labels
``nvidia.com/gpu.replicas``, ``nvidia.com/gpu.sharing-strategy=time-slicing`` and a ``-SHARED`` product
(gpuplace.localcluster.fake_nodes.node_manifest). Only the pods differ, by how each arm can ask:

- **kube-scheduler alone** counts replicas and nothing else: a pod asks ``count × ceil(milli × R / 1000)``
  replicas (``R`` = replicas per GPU), so a whole GPU is R replicas and a 460m share with R = 10 is 5
  (500m: a share is rounded up to the replica grain). Nothing ties replicas to one physical GPU: a
  "whole-GPU" pod may get slices of several GPUs, and two pods the same GPU
  (:func:`physical_layout` counts the nodes where that must happen, and the GPU-milli it costs).
- **kube-scheduler + gpuplace** (its contract, scheduler/README.md): a whole-GPU pod asks
  ``nvidia.com/gpu: N`` (N GPUs; kube-scheduler counts N replicas, gpuplace books N whole GPUs), a share
  asks ``nvidia.com/gpu: 1`` plus ``gpuplace.io/gpu-milli``.
- GPU-model constraints (``gpu_spec``) become a required node affinity on ``nvidia.com/gpu.product``.
- The undisclosed G2 / G3 models are labelled as 8-GPU NVSwitch boards (A100-SXM4-80GB / H100-80GB),
  as the simulator treats them (gpuplace.simulate.gpuset).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpuplace.localcluster.fake_nodes import NodePreset, node_manifest
from gpuplace.simulate.engine import arrivals
from gpuplace.simulate.traces import NodeTable, PodTable, read_nodes, read_pods

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "openb"
GPU = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
MILLI = "gpuplace.io/gpu-milli"
# openb model → (GFD product label, memory MiB); G2/G3 undisclosed: 8-GPU NVSwitch boards.
PRODUCTS = {
    "G2": ("NVIDIA-A100-SXM4-80GB", 81920),
    "G3": ("NVIDIA-H100-80GB-HBM3", 81559),
    "V100M16": ("Tesla-V100-SXM2-16GB", 16384),
    "V100M32": ("Tesla-V100-SXM2-32GB", 32768),
    "T4": ("Tesla-T4", 15360),
    "P100": ("Tesla-P100-PCIE-16GB", 16384),
    "A10": ("NVIDIA-A10", 23028),
}


@dataclass
class Slice:
    nodes: NodeTable
    pods: PodTable
    arrive: np.ndarray  # seconds into the run
    leave: np.ndarray  # seconds into the run, inf = stays

    def kind(self, i: int) -> str:
        """``cpu`` (no GPU), ``share`` (< 1000 milli) or ``whole``."""
        if not self.pods.gpu_count[i]:
            return "cpu"
        return "share" if self.pods.gpu_milli[i] < 1000 else "whole"


def stratified_slice(n_nodes: int, seconds: float, seed: int, data: Path = DATA) -> Slice:
    nodes, pods = (
        read_nodes(data / "openb_node_list_gpu_node.csv"),
        read_pods(data / "openb_pod_list_default.csv"),
    )
    rng = np.random.default_rng(seed)
    models = np.array(nodes.models)
    chosen: list[int] = []
    for model in nodes.model_names():
        rows = np.nonzero(models == model)[0]
        k = max(1, round(n_nodes * len(rows) / len(nodes)))
        chosen.extend(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    chosen.sort()
    fraction = len(chosen) / len(nodes)
    picked = np.sort(rng.choice(len(pods), size=round(fraction * len(pods)), replace=False))
    assert pods.creation is not None and pods.deletion is not None
    creation, deletion = pods.creation[picked].astype(float), pods.deletion[picked].astype(float)
    t0, t1 = creation.min(), creation.max()
    scale = seconds / max(t1 - t0, 1.0)
    arrive = (creation - t0) * scale
    leave = np.where((deletion < 0) | (deletion > t1), np.inf, (deletion - t0) * scale)
    node_table = NodeTable(
        names=tuple(nodes.names[i] for i in chosen), cpu_milli=nodes.cpu_milli[chosen],
        memory_mib=nodes.memory_mib[chosen], gpus=nodes.gpus[chosen], models=tuple(nodes.models[i] for i in chosen),
    )  # fmt: skip
    # The simulator sees the same slice: pods alive at the last arrival never leave.
    deletion = np.where(np.isfinite(leave), pods.deletion[picked], -1)
    pod_table = PodTable(
        names=tuple(pods.names[i] for i in picked), cpu_milli=pods.cpu_milli[picked],
        memory_mib=pods.memory_mib[picked], gpu_count=pods.gpu_count[picked], gpu_milli=pods.gpu_milli[picked],
        models=tuple(pods.models[i] for i in picked), creation=pods.creation[picked], deletion=deletion,
    )  # fmt: skip
    return Slice(node_table, pod_table, arrive, leave)


def node_manifests(sl: Slice, *, replicas: int) -> list[dict[str, Any]]:
    """The slice's nodes, time-sliced with ``replicas`` per GPU (the same for both arms)."""
    out = []
    for i, name in enumerate(sl.nodes.names):
        product, mib = PRODUCTS[sl.nodes.models[i]]
        preset = NodePreset(key=f"openb-{sl.nodes.models[i]}", cpu=f"{int(sl.nodes.cpu_milli[i])}m",
                            memory=f"{int(sl.nodes.memory_mib[i])}Mi", gpu_product=product, gpu_memory_mib=mib,
                            gpu_count=int(sl.nodes.gpus[i]))  # fmt: skip
        out.append(node_manifest(name.lower(), preset, taint_gpu_nodes=False, topology=True,
                                 time_slicing_replicas=replicas))  # fmt: skip
    return out


Event = tuple[float, bool, int, str]  # (seconds into the run, is a deletion, pod row, pod name)


def departure_events(sl: Slice) -> list[Event]:
    """The trace's own times: arrive at creation_time, leave at deletion_time (compressed)."""
    out = [(float(sl.arrive[i]), False, i, sl.pods.names[i]) for i in range(len(sl.pods))]
    out += [
        (float(sl.leave[i]), True, i, sl.pods.names[i])
        for i in range(len(sl.pods))
        if math.isfinite(sl.leave[i])
    ]
    return sorted(out)


def fgd_events(sl: Slice, seed: int, arrival: float, rate: float) -> list[Event]:
    """FGD's method: the simulator's arrival sequence for ``seed`` (shuffled, resampled until requested
    GPU reaches ``arrival`` × capacity), submitted at ``rate`` pods/s, nobody leaves."""
    events = arrivals(sl.pods, int(sl.nodes.gpus.sum()) * 1000, arrival, np.random.default_rng(seed))
    return [(k / rate, False, int(row), f"{sl.pods.names[row]}-{k}") for k, row in enumerate(events.pod)]


def gpu_request(sl: Slice, i: int, *, gpuplace: bool, replicas: int) -> tuple[int, dict[str, str]]:
    """``nvidia.com/gpu`` amount and annotations of pod row ``i`` for one arm (module docstring)."""
    count, milli = int(sl.pods.gpu_count[i]), int(sl.pods.gpu_milli[i])
    if not count:
        return 0, {}
    if gpuplace:
        return count, ({MILLI: str(milli)} if milli < 1000 else {})
    return count * math.ceil(min(milli, 1000) * replicas / 1000), {}


def pod_manifest(sl: Slice, i: int, *, gpuplace: bool, replicas: int, name: str) -> dict[str, Any]:
    amount, annotations = gpu_request(sl, i, gpuplace=gpuplace, replicas=replicas)
    requests = {"cpu": f"{int(sl.pods.cpu_milli[i])}m", "memory": f"{int(sl.pods.memory_mib[i])}Mi"}
    if amount:
        requests[GPU] = str(amount)
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": requests, "limits": {k: v for k, v in requests.items() if k == GPU}}}],
        "terminationGracePeriodSeconds": 0,
        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    }  # fmt: skip
    allowed = sl.pods.models[i]
    if amount and allowed:
        values = sorted(PRODUCTS[m][0] + "-SHARED" for m in allowed if m in PRODUCTS)
        term = {"matchExpressions": [{"key": PRODUCT, "operator": "In", "values": values}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


@dataclass
class Layout:
    overbooked: list[str]  # nodes whose bound pods have no layout on physical GPUs
    unhonoured_milli: int  # GPU-milli of the shares left without a GPU on those nodes


def physical_layout(gpus_per_node: dict[str, int], bound: Iterable[tuple[str, int, int]]) -> Layout:
    """Lay the bound pods out on physical GPUs: each whole-GPU pod on GPUs of its own, each share
    (``milli`` < 1000) inside one GPU. ``bound`` = (node, GPU count, milli per GPU) of every bound pod.

    Whole pods take their GPUs first (they always fit: kube-scheduler counted them whole); the shares are
    then packed first-fit decreasing into the GPUs left. A node where some share finds no GPU is
    overbooked, and the shares left over are what the device plugin could only serve by time-slicing
    them onto GPUs others hold. FFD may miss a layout that exists, so both figures are upper bounds
    (exact when zero).
    """
    whole: dict[str, int] = defaultdict(int)
    shares: dict[str, list[int]] = defaultdict(list)
    for node, count, milli in bound:
        if count and milli >= 1000:
            whole[node] += count
        elif count:
            shares[node].extend([milli] * count)
    overbooked, unhonoured = [], 0
    for node in sorted(set(whole) | set(shares)):
        free = gpus_per_node.get(node, 0) - whole[node]
        bins: list[int] = []
        left = 0
        for m in sorted(shares[node], reverse=True):
            slot = next((k for k, used in enumerate(bins) if used + m <= 1000), None)
            if slot is not None:
                bins[slot] += m
            elif len(bins) < free:
                bins.append(m)
            else:
                left += m
        if free < 0 or left:
            overbooked.append(node)
            unhonoured += left
    return Layout(overbooked, unhonoured)
