"""A watch on one namespace's pods for the benches on a real control plane: when each pod first shows a
node, which node, and which pods are gone."""

from __future__ import annotations

import asyncio
import contextlib
import time

from kubernetes_asyncio import client

from scheduler.kubeapi import KubeSource


class PodWatch:
    """Bind time and node of every pod of a namespace, and which are gone."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.bound: dict[str, tuple[float, str]] = {}
        self.gone: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        page = await client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, limit=1)
        self.task = asyncio.create_task(self._run(page.metadata.resource_version))

    async def _run(self, rv: str) -> None:
        source = KubeSource(self.api)
        while True:
            async for event in source.watch("pods", resource_version=rv, timeout_seconds=600):
                obj = event.get("object") or {}
                meta = obj.get("metadata") or {}
                rv = meta.get("resourceVersion") or rv
                if meta.get("namespace") != self.namespace:
                    continue
                name, node = meta["name"], (obj.get("spec") or {}).get("nodeName")
                if node and name not in self.bound:
                    self.bound[name] = (time.monotonic(), node)
                if event.get("type") == "DELETED":
                    self.gone.add(name)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
