"""The synthetic cluster the extender benches serve, and the pods they send.

Nodes: 5,000 × 8 GPUs by default (60% HGX H100, 25% A100-80GB, 15% L40S PCIe, time-sliced with 8
replicas), each padded with the usual status noise (~7 KB, like real GFD-labelled nodes). Running pods:
gpuplace records placed by `placer.choose` on random nodes, in one of two mixes —

- `whole` (the default, 20,000 pods): 70% 1-GPU, 20% 2-GPU, 8% 4-GPU, 2% 8-GPU;
- `dense` (for the 50,000-pod memory figure): whole-GPU pods as above on the H100/A100 nodes and
  time-sliced shares (125/250/500 milli, one `nvidia.com/gpu` each, as kube-scheduler counts them) on
  the L40S nodes, until either runs out; then CPU-only pods (daemonset-like, 1 cpu / 1 GiB) up to the
  count, because 40,000 GPUs cannot hold 50,000 GPU pods of any realistic shape. The table says how
  many of each were placed.

The context is built through the cache's own relist path as after a restart: the lists are made in a
helper process and arrive as JSON pages of 2,000 (the reflectors' default page size), each decoded and
handed to the cache's LIST sink (`node_pages` / `pod_pages`, scheduler.listing; a checkout without
them gets the whole list at once through `replace_nodes` / `replace_pods`, as its reflectors did). So
the server's memory is its own — the cache, and one page at a time — not the bench's, and its build
time is the restart cost. Imports of gpuplace happen inside the functions: a `--baseline` server
process puts another checkout first on sys.path before calling them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

MODELS = [
    ("NVIDIA-H100-80GB-HBM3", 81559, 0.60),
    ("NVIDIA-A100-SXM4-80GB", 81920, 0.25),
    ("NVIDIA-L40S", 46068, 0.15),
]
REPLICAS = 8  # time-slicing replicas per L40S GPU
SHAPES = [  # (gpus, annotations) of the pods being scheduled
    (1, {}),
    (1, {"gpuplace.io/gpu-milli": "500"}),
    (2, {}),
    (2, {"gpuplace.io/nvlink": "required"}),
    (4, {"gpuplace.io/nvlink": "required"}),
    (8, {"gpuplace.io/nvlink": "required"}),
    (1, {"gpuplace.io/gpu-models": "H100-80GB"}),
    (4, {"gpuplace.io/gpu-models": "A100-80GB,H100-80GB"}),
]


def node(name: str, product: str, mem: int, rng: random.Random) -> dict[str, Any]:
    """A Node as a GFD-labelled cluster serves it, padded with the usual status noise (~7 KB). L40S nodes
    are time-sliced, so the fractional-share pods have somewhere to go."""
    sliced = "L40S" in product
    alloc = {
        "cpu": "224",
        "memory": "2000Gi",
        "pods": "110",
        "nvidia.com/gpu": str(8 * REPLICAS) if sliced else "8",
        "ephemeral-storage": "1Ti",
    }
    sharing = (
        {"nvidia.com/gpu.replicas": str(REPLICAS), "nvidia.com/gpu.sharing-strategy": "time-slicing"}
        if sliced
        else {}
    )
    images = [
        {
            "names": [
                f"registry.example.com/team-{rng.randrange(99)}/image-{i}@sha256:{uuid.uuid4().hex}"
                f"{uuid.uuid4().hex}",
                f"registry.example.com/team/image-{i}:v{i}.{rng.randrange(99)}",
            ],
            "sizeBytes": rng.randrange(10**8, 10**10),
        }
        for i in range(24)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1",
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": f"{product}-SHARED" if sliced else product,
                **sharing,
                "nvidia.com/gpu.memory": str(mem),
                "nvidia.com/gpu.count": "8",
                "nvidia.com/mig.strategy": "none",
                "topology.kubernetes.io/zone": "z1",
                "gpuplace.io/rack": f"r{rng.randrange(100)}",
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "images": images,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                }
                for t, s in (
                    ("Ready", "True"),
                    ("MemoryPressure", "False"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "False"),
                )
            ],
            "nodeInfo": {"kubeletVersion": "v1.36.3", "osImage": "Ubuntu 24.04", "machineID": name},
        },
    }


def pod(
    name: str,
    gpus: int,
    annotations: dict[str, str],
    node_name: str = "",
    *,
    cpu: str = "4",
    memory: str = "16Gi",
) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": str(uuid.uuid4()),
            "resourceVersion": "7",
            "annotations": annotations,
            "labels": {"app": "bench"},
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "cuda:12",
                    "resources": {"requests": {"cpu": cpu, "memory": memory, **limits}, "limits": limits},
                }
            ],
            "priority": 0,
            "schedulerName": "default-scheduler",
            **({"nodeName": node_name} if node_name else {}),
        },
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def build_nodes(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    products = [(p, m) for p, m, share in MODELS for _ in range(int(share * 100))]
    return [node(f"gpu-{i:05d}", *products[i % len(products)], rng) for i in range(n)]


@dataclass
class Built:
    """The server's context and what went into it."""

    ctx: Any  # scheduler.context.ExtenderContext (imported late, see the module docstring)
    build_s: float
    gpu_pods: int
    share_pods: int
    cpu_pods: int
    busy_gpus: int
    free: dict[str, int]  # whole GPUs free per node name (what NodeResourcesFit would count)


def running_pods(nodes: list[dict[str, Any]], n_pods: int, seed: int, mix: str) -> tuple[list[Any], int, int]:
    """(pod objects, GPU pods, share pods): running pods with gpuplace records, as gpuplace placed them."""
    from placement_core import GpuRequest, placer
    from scheduler.binder import MemoryBinder
    from scheduler.context import ExtenderContext
    from scheduler.contract import encode_record
    from scheduler.settings import SchedulerSettings

    scratch = ExtenderContext.build(SchedulerSettings(max_gpus_per_node=8), MemoryBinder())
    scratch.cache.replace_nodes(nodes)
    state = scratch.cache.state
    rng = random.Random(seed + 1)
    names = [nd["metadata"]["name"] for nd in nodes]
    sliced = [
        n["metadata"]["name"] for n in nodes if "L40S" in n["metadata"]["labels"]["nvidia.com/gpu.product"]
    ]
    whole = sorted(set(names) - set(sliced)) if mix == "dense" else names
    pods: list[Any] = []
    shares = 0
    misses = {"whole": 0, "share": 0}
    i = 0
    while len(pods) < n_pods and min(misses.values()) < 2000:
        i += 1
        share = mix == "dense" and rng.random() < 0.55
        if share:
            if misses["share"] >= 2000:
                continue
            milli = rng.choice([125, 250, 500])
            req = GpuRequest(count=1, milli=milli, cpu_milli=2000, memory_mib=8192)
            targets, ann = sliced, {"gpuplace.io/gpu-milli": str(milli)}
        else:
            if misses["whole"] >= 2000 and mix == "dense":
                continue
            g = rng.choices([1, 2, 4, 8], [70, 20, 8, 2])[0]
            req = GpuRequest(count=g, cpu_milli=4000, memory_mib=16384)
            targets, ann = whole, {}
        for _ in range(50):
            target = rng.choice(targets)
            placement = placer.choose(state, target, req)
            if placement is not None:
                state.allocate(f"p{i}", placement)
                record = {"gpuplace.io/gpus": encode_record(placement, []), **ann}
                pods.append(
                    pod(
                        f"run-{i}",
                        req.count,
                        record,
                        target,
                        cpu=f"{req.cpu_milli}m",
                        memory=f"{req.memory_mib}Mi",
                    )
                )
                shares += share
                break
        else:
            misses["share" if share else "whole"] += 1
            if mix != "dense" and misses["whole"] >= 2000:
                break
    gpu_pods = len(pods)
    for j in range(n_pods - gpu_pods if mix == "dense" else 0):  # daemonset-like pods fill the count
        pods.append(pod(f"cpu-{j}", 0, {}, names[j % len(names)], cpu="1", memory="1Gi"))
    return pods, gpu_pods, shares


PAGE = 2000  # scheduler.settings.WatchSettings.page_size


def _send_lists(n_nodes: int, n_pods: int, seed: int, mix: str, conn: Connection) -> None:
    """The helper process: both LISTs as JSON pages (an empty message ends each), then the pod counts."""
    nodes = build_nodes(n_nodes, seed)
    pods, gpu_pods, shares = running_pods(nodes, n_pods, seed, mix)
    for items in (nodes, pods):
        for i in range(0, len(items), PAGE):
            conn.send_bytes(orjson.dumps(items[i : i + PAGE]))
        conn.send_bytes(b"")
    conn.send((gpu_pods, shares, len(pods)))
    conn.close()


class _Whole:
    """A checkout without LIST sinks: every page kept, then one full-list replace."""

    def __init__(self, replace: Callable[[list[Any]], None]) -> None:
        self.replace, self.items = replace, []

    def page(self, items: list[Any]) -> None:
        self.items.extend(items)

    def done(self) -> None:
        self.replace(self.items)


def build(n_nodes: int, n_pods: int, seed: int, mix: str = "whole") -> Built:
    """The extender context a bench server answers from, rebuilt from paged lists as after a restart."""
    from scheduler.binder import MemoryBinder
    from scheduler.context import ExtenderContext
    from scheduler.settings import SchedulerSettings

    recv, send = mp.Pipe(duplex=False)
    helper = os.fork()  # not multiprocessing.Process: the bench's server process is daemonic
    if helper == 0:
        recv.close()
        try:
            _send_lists(n_nodes, n_pods, seed, mix, send)
        finally:
            os._exit(0)
    send.close()
    ctx = ExtenderContext.build(SchedulerSettings(max_gpus_per_node=8), MemoryBinder())
    cache = ctx.cache
    if hasattr(cache, "node_pages"):
        sinks = [cache.node_pages(), cache.pod_pages(0.0)]
    else:
        sinks = [_Whole(cache.replace_nodes), _Whole(lambda items: cache.replace_pods(items, listed_at=0.0))]
    build_s = 0.0
    for sink in sinks:
        while page := recv.recv_bytes():
            t0 = time.perf_counter()
            sink.page(orjson.loads(page))
            build_s += time.perf_counter() - t0
            del page
        t0 = time.perf_counter()
        sink.done()
        build_s += time.perf_counter() - t0
    gpu_pods, shares, n_listed = recv.recv()
    os.waitpid(helper, 0)
    if cache.dra is not None:  # no DRA objects in this cluster: listed, empty
        cache.replace_slices([])
        cache.replace_claims([])
    ctx.warm = True
    ctx.inherited = True  # no earlier process bound anything here (scheduler.inflight)
    state = cache.state
    busy = int((state.gpu_free_milli[: state.n_rows] < 1000).sum())
    free = {name: int((state.gpu_free_milli[row] >= 1000).sum()) for name, row in state.index.items()}
    return Built(ctx, build_s, gpu_pods, shares, n_listed - gpu_pods, busy, free)
