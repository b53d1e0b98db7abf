"""Jobs and Deployments as users write them, for the controllers of the local control plane to run.

The shapes are the common ones for GPU work: a training Job (``completions: 4``, ``parallelism: 2``,
one GPU per pod, ``restartPolicy: OnFailure``) and an inference Deployment (two replicas of one GPU,
a readiness probe). GPU amounts are written in requests and limits and the pods tolerate the GPU
taint, as such manifests usually do; gpuplace's webhook leaves them as they are. What differs from a
real cluster is only what kwok needs: a pod of a Job says how long it runs
(:func:`gpuplace.localcluster.lifecycle.run_for`), and the image is never pulled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from gpuplace.localcluster.lifecycle import run_for

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def _container(name: str, image: str, gpus: int, cpu: str, memory: str) -> dict[str, Any]:
    amounts = {GPU_RESOURCE: str(gpus)} if gpus else {}
    return {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": cpu, "memory": memory, **amounts}, "limits": dict(amounts)},
    }


def training_job(
    name: str = "model-training",
    *,
    completions: int = 4,
    parallelism: int = 2,
    gpus: int = 1,
    run_seconds: float = 5.0,
    node_selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    priority_class: str | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job whose pods each train for ``run_seconds`` on ``gpus`` GPUs, then succeed."""
    container = _container("trainer", "pytorch/pytorch:2.5-cuda12.1", gpus, "4", "16Gi")
    container |= {"command": ["python", "train.py"], "args": ["--epochs=100"]}
    spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "tolerations": [dict(GPU_TOLERATION)],
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "template": {
                "metadata": {"annotations": {**run_for(run_seconds), **(annotations or {})}},
                "spec": spec,
            },
        },
    }


def inference_deployment(
    name: str = "inference-service",
    *,
    replicas: int = 2,
    gpus: int = 1,
    node_selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    termination_grace_seconds: int = 30,
    priority_class: str | None = None,
) -> dict[str, Any]:
    """An apps/v1 Deployment of ``replicas`` inference servers with ``gpus`` GPUs each (they run until deleted)."""
    labels = {"app": name}
    container = _container("inference", "my-inference-server:latest", gpus, "2", "8Gi")
    container |= {
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "tolerations": [dict(GPU_TOLERATION)],
        "terminationGracePeriodSeconds": termination_grace_seconds,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if priority_class:
        spec["priorityClassName"] = priority_class
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": spec}
    if annotations:
        template["metadata"]["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
    }


async def create(api: client.ApiClient, namespace: str, manifest: Mapping[str, Any]) -> Any:
    """Create a Job or a Deployment from its manifest."""
    body: Any = dict(manifest)
    if manifest["kind"] == "Job":
        return await client.BatchV1Api(api).create_namespaced_job(namespace, body)
    if manifest["kind"] == "Deployment":
        return await client.AppsV1Api(api).create_namespaced_deployment(namespace, body)
    raise ValueError(f"not a Job or Deployment: {manifest.get('kind')!r}")


async def scale(api: client.ApiClient, namespace: str, deployment: str, replicas: int) -> None:
    body: Any = {"spec": {"replicas": replicas}}
    await client.AppsV1Api(api).patch_namespaced_deployment_scale(deployment, namespace, body)


async def job_finished(api: client.ApiClient, namespace: str, name: str) -> str | None:
    """``"Complete"`` or ``"Failed"`` once the Job controller says so, else None."""
    job = await client.BatchV1Api(api).read_namespaced_job_status(name, namespace)
    for cond in (job.status.conditions if job.status else None) or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


async def pods_of(api: client.ApiClient, namespace: str, selector: str) -> list[Any]:
    """Pods matching a label selector (``job-name=x``, ``app=y``), oldest first."""
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    return sorted(pods.items, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
