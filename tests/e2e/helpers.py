"""Small helpers shared by the gpuplace e2e tests (pods, records, NVLink islands)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from kubernetes_asyncio import client

from gpuplace.localcluster import audit
from placement_core.topology import islands
from scheduler.contract import Record, decode_record

OWNER_LABEL = "e2e.gpuplace.io/owner"
NodeFactory = Callable[..., Awaitable[str]]  # the conftest fixture: (preset, name=None, **node_manifest kwargs)


def owner(namespace: str) -> dict[str, str]:
    """Label (and nodeSelector) tying a test's nodes to its pods: other tests' nodes never interfere."""
    return {OWNER_LABEL: namespace}


async def read_pod(k8s: client.ApiClient, namespace: str, name: str) -> Any:
    return await client.CoreV1Api(k8s).read_namespaced_pod(name, namespace)


async def record_of(k8s: client.ApiClient, namespace: str, name: str) -> Record:
    pod = await read_pod(k8s, namespace, name)
    raw = (pod.metadata.annotations or {}).get(audit.KEYS.gpus)
    assert raw, f"{namespace}/{name} has no {audit.KEYS.gpus} annotation: {pod.metadata.annotations}"
    record = decode_record(raw)
    assert record.node == pod.spec.node_name
    return record


async def node_topology(k8s: client.ApiClient, name: str) -> dict[str, Any]:
    node = await client.CoreV1Api(k8s).read_node(name)
    doc = json.loads(node.metadata.annotations[audit.KEYS.topology])
    assert isinstance(doc, dict)
    return doc


def nvlink_islands(topology: dict[str, Any], gpus: tuple[int, ...]) -> list[list[int]]:
    """Connected components of the node's NVLink graph restricted to ``gpus``."""
    links = np.asarray(topology["links"], dtype=np.uint8)
    members = np.zeros(len(links), dtype=np.bool_)
    members[list(gpus)] = True
    return islands(links, members)


async def audit_namespaces(k8s: client.ApiClient, *namespaces: str, require_records: bool = True) -> audit.Audit:
    pods = [p for ns in namespaces for p in await audit.list_raw(k8s, "pods", namespace=ns)]
    nodes = await audit.list_raw(k8s, "nodes")
    return audit.audit(pods, nodes, require_records=require_records)
