"""Pods for the local control plane: manifests, creation, waiting for binding, and why a pod is pending.

Pod manifests here ask for GPUs the way users write them: ``limits`` only and no toleration (the
webhook fills in requests and the toleration), unless a test says otherwise. A pod is "placed" when
``spec.nodeName`` is set (kwok then makes it Running); a pod that cannot be placed keeps a ``PodScheduled``
condition with ``status=False`` and kube-scheduler records ``FailedScheduling`` events whose message
contains every filter's reason, gpuplace's included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.waiting import WaitTimeoutError

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
GPU_RESOURCE = "nvidia.com/gpu"


def pod_manifest(
    name: str,
    *,
    gpus: int = 0,
    mig: str | None = None,
    cpu: str = "1",
    memory: str = "4Gi",
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    gpu_requests: bool = False,
    tolerate_gpu_taint: bool = False,
    extra_limits: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A one-container pod. ``gpus`` whole GPUs (or ``gpus`` MIG devices of profile ``mig``) in limits.

    ``gpu_requests`` also writes the GPU amount in requests; ``tolerate_gpu_taint`` adds the
    ``nvidia.com/gpu`` toleration (both are what the webhook would add).
    """
    limits: dict[str, str] = {}
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus:
        resource = f"nvidia.com/mig-{mig}" if mig else GPU_RESOURCE
        limits[resource] = str(gpus)
        if gpu_requests:
            requests[resource] = str(gpus)
    limits.update(extra_limits or {})
    resources: dict[str, Any] = {"requests": requests}
    if limits:
        resources["limits"] = limits
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": PAUSE_IMAGE, "resources": resources}],
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerate_gpu_taint:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


async def create_pod(
    api: client.ApiClient, namespace: str, body: Mapping[str, Any], *, retry_for: float = 0.0
) -> Any:
    """Create a pod; with ``retry_for`` > 0, retry webhook-unavailable errors (gpuplace restarting)."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + retry_for
    while True:
        try:
            payload: Any = dict(body)
            return await core.create_namespaced_pod(namespace, payload)
        except ApiException as exc:
            webhook_down = exc.status == 500 and "failed calling webhook" in str(exc.body)
            if not webhook_down or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def node_names(api: client.ApiClient, namespace: str) -> dict[str, str | None]:
    """pod name → spec.nodeName (None while unbound) for every pod in ``namespace``."""
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace)
    return {p.metadata.name: p.spec.node_name for p in pods.items}


async def wait_bound(
    api: client.ApiClient,
    namespace: str,
    names: Iterable[str],
    *,
    within: float = 60.0,
    interval: float = 0.1,
) -> dict[str, str]:
    """Wait until every named pod has a node; returns name → node. Times out naming the unbound ones."""
    wanted = list(names)
    deadline = time.monotonic() + within
    while True:
        bound = await node_names(api, namespace)
        missing = [n for n in wanted if not bound.get(n)]
        if not missing:
            return {n: str(bound[n]) for n in wanted}
        if time.monotonic() >= deadline:
            reasons = {n: await pending_reason(api, namespace, n) for n in missing[:5]}
            raise WaitTimeoutError(
                f"{len(missing)} pod(s) in {namespace} not bound after {within:.0f}s: {missing[:10]}; "
                f"reasons: {reasons}"
            )
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Pending:
    """Why a pod is not bound: its PodScheduled condition and its latest FailedScheduling event."""

    condition_reason: str
    condition_message: str
    event_message: str

    @property
    def text(self) -> str:
        return self.event_message or self.condition_message


async def pending_reason(api: client.ApiClient, namespace: str, name: str) -> Pending | None:
    """None when the pod is bound (or has no scheduling verdict yet)."""
    core = client.CoreV1Api(api)
    try:
        pod = await core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if pod.spec.node_name:
        return None
    reason = message = ""
    for cond in (pod.status.conditions if pod.status else None) or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            reason, message = cond.reason or "", cond.message or ""
    events = await core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},reason=FailedScheduling"
    )
    latest = max(
        events.items,
        key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
        default=None,
    )
    event_message = (latest.message or "") if latest is not None else ""
    if not (reason or message or event_message):
        return None
    return Pending(reason, message, event_message)


async def wait_pending(
    api: client.ApiClient, namespace: str, name: str, *, contains: str = "", within: float = 30.0
) -> Pending:
    """Wait until the pod has a scheduling failure whose condition or event message contains ``contains``."""
    deadline = time.monotonic() + within
    last: Pending | None = None
    while True:
        last = await pending_reason(api, namespace, name)
        if last is not None and contains in last.condition_message and contains in last.event_message:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"pod {namespace}/{name}: no scheduling failure mentioning {contains!r}: {last}")
        await asyncio.sleep(0.2)
