"""Kubernetes object dicts shaped like the API server's (and kube-scheduler's) JSON, for the tests."""

from __future__ import annotations

import itertools
import json
import uuid as _uuid
from typing import Any

_rv = itertools.count(1)


def node(
    name: str,
    *,
    product: str = "NVIDIA-H100-80GB-HBM3",
    gpus: int = 8,
    memory_mib: int = 81559,
    cpu: str = "224",
    memory: str = "2000Gi",
    topology: dict[str, Any] | str | None = None,
    mig: dict[str, int] | None = None,
    labels: dict[str, str] | None = None,
    unschedulable: bool = False,
    replicas: int = 1,
) -> dict[str, Any]:
    """A GFD-labelled GPU node (gpus=0 and product='' for a CPU node). `replicas` > 1: time-sliced as GFD
    labels it (`-SHARED` product, strategy, replicas; allocatable nvidia.com/gpu = GPUs × replicas)."""
    lab = {"kubernetes.io/hostname": name}
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    if product:
        lab |= {
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.memory": str(memory_mib),
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/mig.strategy": "mixed" if mig else "none",
        }
        alloc["nvidia.com/gpu"] = str(gpus * replicas)
        if replicas > 1:
            lab["nvidia.com/gpu.product"] = f"{product}-SHARED"
            lab["nvidia.com/gpu.replicas"] = str(replicas)
            lab["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
    for profile, n in (mig or {}).items():
        alloc[f"nvidia.com/mig-{profile}"] = str(n)
        lab[f"nvidia.com/mig-{profile}.count"] = str(n)
    lab |= labels or {}
    ann = {}
    if topology is not None:
        ann["gpuplace.io/gpu-topology"] = topology if isinstance(topology, str) else json.dumps(topology)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(_uuid.uuid4()),
            "resourceVersion": str(next(_rv)),
            "labels": lab,
            "annotations": ann,
        },
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(
    name: str,
    *,
    gpus: int = 0,
    mig: str | None = None,
    cpu: str = "1",
    memory: str = "1Gi",
    annotations: dict[str, str] | None = None,
    node_name: str = "",
    phase: str = "Pending",
    priority: int | None = 0,
    namespace: str = "default",
    uid: str | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod as the API server serialises it (managedFields and all the noise included)."""
    limits: dict[str, str] = {}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    if mig:
        limits[f"nvidia.com/mig-{mig}"] = "1"
    requests = {"cpu": cpu, "memory": memory, **limits}
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "cuda:12",
                "resources": {"requests": requests, "limits": limits},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Never",
        "schedulerName": "default-scheduler",
        "priority": priority,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {},
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(_uuid.uuid4()),
            "resourceVersion": str(next(_rv)),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": annotations or {},
            "labels": {"app": name},
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {}},
                }
            ],
        },
        "spec": spec,
        "status": {"phase": phase, "qosClass": "Burstable"},
    }


def extender_args(
    p: dict[str, Any], *, names: list[str] | None = None, nodes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """ExtenderArgs exactly as kube-scheduler encodes it: Pod, Nodes, NodeNames — in that order."""
    return {
        "Pod": p,
        "Nodes": None if nodes is None else {"metadata": {}, "items": nodes},
        "NodeNames": names,
    }
