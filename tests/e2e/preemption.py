"""Shared by the preemption e2e tests: PriorityClasses, a node layout built through the real scheduler."""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound
from tests.e2e.helpers import node_topology, owner, record_of

PAIR = {"gpuplace.io/nvlink": "required"}
CLASSES = (("low1", 100), ("low2", 200), ("mid", 300), ("high", 1000))


@asynccontextmanager
async def priority_classes(k8s: client.ApiClient) -> AsyncIterator[dict[str, str]]:
    """PriorityClasses low1 (100) < low2 (200) < mid (300) < high (1000), with names unique to the caller."""
    api = client.SchedulingV1Api(k8s)
    tag = secrets.token_hex(3)
    names = {key: f"e2e-{key}-{tag}" for key, _ in CLASSES}
    try:
        for key, value in CLASSES:
            body: Any = {
                "metadata": {"name": names[key]},
                "value": value,
                "preemptionPolicy": "PreemptLowerPriority",
            }
            await api.create_priority_class(body)
        yield names
    finally:
        for name in names.values():
            try:
                await api.delete_priority_class(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def metric(gp: GpuplaceServer, name: str, *labels: str) -> float:
    """Sum of gpuplace's /metrics samples of `name` whose label text contains every one of `labels`."""
    status, body = probe(f"{gp.extender_base}/metrics", ca_file=gp.cp.ca_file)
    assert status == 200
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in body.splitlines()
        if ln.startswith(name + "{") and all(lab in ln for lab in labels)
    )


def extender(gp: GpuplaceServer, verb: str, payload: dict[str, Any]) -> Any:
    """POST one extender verb to gpuplace, as kube-scheduler does (the tests' probe of gpuplace's view)."""
    context = ssl.create_default_context(cafile=str(gp.cp.ca_file)) if gp.extender_https else None
    request = urllib.request.Request(
        f"{gp.extender_url}/{verb}", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def gpu_pod(name: str, namespace: str, *, gpus: int, priority: int) -> dict[str, Any]:
    """A pod as kube-scheduler sends it to the extender (2-GPU NVLink pods in these tests)."""
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"{name}-{secrets.token_hex(4)}",
            "annotations": PAIR,
        },
        "spec": {
            "priority": priority,
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


class Layout:
    """Places pods on one node through the real scheduler and remembers who holds which GPU."""

    def __init__(self, k8s: client.ApiClient, namespace: str, node: str, classes: dict[str, str]) -> None:
        self.k8s, self.namespace, self.node, self.classes = k8s, namespace, node, classes
        self.holder: dict[int, str] = {}  # GPU → pod name
        self.partner: dict[int, int] = {}

    async def load_topology(self) -> None:
        links = (await node_topology(self.k8s, self.node))["links"]
        self.partner = {g: next(j for j, n in enumerate(row) if n) for g, row in enumerate(links)}

    def body(self, name: str, cls: str, *, gpus: int = 1, **kw: Any) -> dict[str, Any]:
        b = pod_manifest(name, gpus=gpus, node_selector=owner(self.namespace), **kw)
        b["spec"]["priorityClassName"] = self.classes[cls]
        return b

    async def place(self, name: str, cls: str, *, gpus: int = 1, **kw: Any) -> tuple[int, ...]:
        await create_pod(self.k8s, self.namespace, self.body(name, cls, gpus=gpus, **kw))
        assert (await wait_bound(self.k8s, self.namespace, [name]))[name] == self.node
        got = (await record_of(self.k8s, self.namespace, name)).gpus
        for g in got:
            self.holder[g] = name
        return tuple(got)

    async def fill(self, cls: str, prefix: str) -> None:
        i = 0
        while len(self.holder) < 8:
            await self.place(f"{prefix}{i}", cls)
            i += 1

    async def split_pair(
        self,
        victim_cls: str,
        partner_cls: str,
        *,
        rest_cls: str | None = None,
        partner_labels: dict[str, str] | None = None,
    ) -> tuple[int, int]:
        """Two `victim_cls` pods ("va", "vb") on different bridged pairs; "pa<i>" (`partner_cls`, with
        `partner_labels`) fill GPUs until va's partner is taken, "rest<i>" (`rest_cls`, default
        `partner_cls`) the rest of the node."""
        a = (await self.place("va", victim_cls))[0]
        i = 0
        while self.partner[a] not in self.holder:
            assert len(self.holder) < 7, f"gpuplace never filled GPU {a}'s partner: {self.holder}"
            await self.place(f"pa{i}", partner_cls, labels=partner_labels)
            i += 1
        b = (await self.place("vb", victim_cls))[0]
        assert self.partner[a] != b and b != a
        await self.fill(rest_cls or partner_cls, "rest")
        return a, b
