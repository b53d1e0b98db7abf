"""Fake GPU (and CPU) Nodes created through the API, looking like NVIDIA GFD-labelled nodes.

A Node is created with its status (Ready, allocatable ``cpu``, ``memory``, ``pods``,
``nvidia.com/gpu`` and MIG resources) and the label ``gpuplace.io/fake-node=true``, by which kwok
manages it (:mod:`gpuplace.localcluster.lifecycle`): kwok renews its Lease and runs the pods bound to
it. The TaintNodesByCondition admission plugin gives every new Node the ``node.kubernetes.io/not-ready``
taint until the node-lifecycle controller sees it Ready; :func:`wait_schedulable` waits for that.

Presets (what a kind of server looks like: GFD labels, resources, the optional
``gpuplace.io/gpu-topology`` document) live in :mod:`gpuplace.localcluster.node_presets`; without the
annotation gpuplace falls back to the labels and the product's preset. :func:`node_manifest` adds the
resources (``nvidia.com/gpu``, and a resource ``nvidia.com/mig-<profile>`` per MIG profile), the
``nvidia.com/gpu=present:NoSchedule`` taint on GPU nodes (the toleration gpuplace's webhook adds) and,
on request, time-slicing. :func:`demo_cluster` describes a mixed 16-node cluster.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.node_presets import PRESETS, NodePreset, gpu_labels, topology_document

__all__ = [  # the presets are re-exported: callers build nodes from here
    "PRESETS",
    "NodePreset",
    "create_demo_cluster",
    "create_fake_node",
    "create_node",
    "create_nodes",
    "delete_nodes",
    "demo_cluster",
    "gpu_labels",
    "node_manifest",
    "node_resources",
    "schedulable",
    "topology_document",
    "wait_schedulable",
]
from gpuplace.localcluster.waiting import wait_until

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
TOPOLOGY_ANNOTATION = "gpuplace.io/gpu-topology"
RACK_LABEL = "gpuplace.io/rack"
ZONE_LABEL = "topology.kubernetes.io/zone"
FAKE_NODE_LABEL = "gpuplace.io/fake-node"
KUBE_VERSION = "v1.36.3"
HTTP_NOT_FOUND = 404


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

    await wait_until(
        done, within=within, what=f"nodes {sorted(wanted)[:5]}... to be Ready without not-ready taints"
    )


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
