"""Helpers for the DRA e2e tests: claim templates as users write them, DRA nodes, and the device audit."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from kubernetes_asyncio import client

from gpuplace.localcluster import audit
from gpuplace.localcluster.dra_slices import (
    DRIVER,
    GPU_CLASS,
    MIG_CLASS,
    PCIE_ROOT,
    devices,
    dra_node_manifest,
    publish,
)
from gpuplace.localcluster.fake_nodes import create_node, delete_nodes, wait_schedulable
from gpuplace.localcluster.workload import PAUSE_IMAGE

DraNodeFactory = Callable[..., Awaitable[str]]
GROUP, VERSION = "resource.k8s.io", "v1"


def gpu_template(name: str, *, count: int = 1, same_pcie_root: bool = False) -> dict[str, Any]:
    """A ResourceClaimTemplate for `count` whole GPUs, optionally all behind one PCIe root complex
    (`constraints[].matchAttribute: resource.kubernetes.io/pcieRoot`, the standard attribute)."""
    spec: dict[str, Any] = {
        "devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": GPU_CLASS, "count": count}}]}
    }
    if same_pcie_root:
        spec["devices"]["constraints"] = [{"requests": ["gpus"], "matchAttribute": PCIE_ROOT}]
    return _template(name, spec)


def mig_template(name: str, profile: str) -> dict[str, Any]:
    """A ResourceClaimTemplate for one MIG device of `profile`, chosen by a CEL selector on its attribute."""
    selector = {"cel": {"expression": f"device.attributes['{DRIVER}'].profile == '{profile}'"}}
    request = {"name": "mig", "exactly": {"deviceClassName": MIG_CLASS, "selectors": [selector]}}
    return _template(name, {"devices": {"requests": [request]}})


def _template(name: str, claim_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {"spec": claim_spec},
    }


def claim_pod(
    name: str,
    template: str,
    *,
    node_selector: dict[str, str],
    cpu: str = "4",
    scheduler_name: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod whose GPUs come from one claim made from `template`, written as users write it (no
    toleration, no marker: the webhook adds those)."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": PAUSE_IMAGE,
                "resources": {"requests": {"cpu": cpu, "memory": "8Gi"}, "claims": [{"name": "gpu"}]},
            }
        ],
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": template}],
        "nodeSelector": node_selector,
        "terminationGracePeriodSeconds": 0,
    }
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


async def create_templates(api: client.ApiClient, namespace: str, *templates: dict[str, Any]) -> None:
    objects = client.CustomObjectsApi(api)
    for template in templates:
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "resourceclaimtemplates", template
        )


async def list_claims(api: client.ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(api)
    if namespace:
        found = await objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaims")
    else:
        found = await objects.list_cluster_custom_object(GROUP, VERSION, "resourceclaims")
    items: list[dict[str, Any]] = found["items"]
    return items


def allocated_devices(claim: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(driver, pool, device) of every result in the claim's status.allocation (admin access excluded:
    it consumes nothing, DRAAdminAccess)."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    return [(r["driver"], r["pool"], r["device"]) for r in results if not r.get("adminAccess")]


def pod_claim(claims: Sequence[dict[str, Any]], pod: Any) -> dict[str, Any] | None:
    """The claim the resourceclaim controller made for the pod's claim "gpu" (pod.status.resourceClaimStatuses),
    or the one kube-scheduler made for its DRA-backed extended resource (status.extendedResourceClaimStatus)."""
    status = pod.status
    name = None
    for entry in (status.resource_claim_statuses if status else None) or []:
        name = entry.resource_claim_name
    extended = status.extended_resource_claim_status if status else None
    if extended is not None:
        name = extended.resource_claim_name
    return next((c for c in claims if c["metadata"]["name"] == name), None)


async def device_audit(api: client.ApiClient, namespaces: Sequence[str]) -> list[str]:
    """Invariant violations visible in the API (gpuplace.localcluster.audit with its DRA checks: no device in two
    claims, counters and capacity within the slices, reserving pods on the allocation's node; device-plugin
    GPUs not double-booked, every GPU pod with a gpuplace record). Empty when all is well."""
    found = await audit.AuditLoop(api, namespaces=namespaces, dra=True).once()
    return list(found.problems)


async def dra_node_factory(api: client.ApiClient) -> AsyncIterator[DraNodeFactory]:
    """`await make(preset, labels=..., roots=..., mig_layout=...)`: a node whose GPUs only NVIDIA's DRA driver
    publishes (no nvidia.com/gpu allocatable), with its ResourceSlice; deleted afterwards (the garbage
    collector then deletes the slice, which the Node owns)."""
    created: list[str] = []

    async def make(preset: str, *, labels: dict[str, str], roots: Sequence[int] | None = None,
                   mig_layout: Sequence[Sequence[str]] | None = None, topology: bool = False) -> str:  # fmt: skip
        name = f"dra-{preset}-{secrets.token_hex(3)}"
        created.append(name)
        await create_node(api, dra_node_manifest(name, preset, labels=labels, topology=topology))
        await publish(api, name, devices(name, preset, roots=roots, mig_layout=mig_layout))
        await wait_schedulable(api, [name])
        return name

    yield make
    await delete_nodes(api, created)
