"""The three Kubernetes calls bind needs, behind a protocol, and an in-memory implementation.

Why a protocol: bind's correctness (no double booking, rollback on every failure, idempotent retries)
is tested by hammering it with hundreds of concurrent calls — that needs an API server that answers in
microseconds and fails on command. `MemoryBinder` is that: it keeps pods as dicts and enforces the same
preconditions the real API server does (UID on annotate and bind, resourceVersion on annotate,
"already assigned" on a second bind). The real implementation is scheduler.kubeapi.KubeBinder.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any, Protocol


class ApiError(Exception):
    """An API call failed; `status` is the HTTP status (0 = no response)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class ConflictError(ApiError):
    """409: stale resourceVersion, or the pod is already bound."""


class NotFoundError(ApiError):
    """404: the pod is gone."""


def api_error(status: int, message: str) -> ApiError:
    cls = {404: NotFoundError, 409: ConflictError}.get(status, ApiError)
    return cls(status, message)


class Binder(Protocol):
    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as JSON, or None when it does not exist."""
        ...

    async def annotate(
        self,
        namespace: str,
        name: str,
        *,
        uid: str,
        resource_version: str | None,
        annotations: dict[str, str],
    ) -> None:
        """Merge `annotations` into the pod; fails unless its UID (and resourceVersion, if given) match."""
        ...

    async def bind(self, namespace: str, name: str, *, uid: str, node: str) -> None:
        """Create the pods/binding; fails unless the UID matches and the pod is unbound."""
        ...


class MemoryBinder:
    """An in-memory API server for pods (tests, benchmarks). `fail` injects errors per call kind."""

    def __init__(
        self, *, delay: float = 0.0, on_change: Callable[[str, dict[str, Any]], None] | None = None
    ) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.delay = delay
        self.on_change = on_change  # e.g. cache.apply_pod, to play the watch
        self.fail: dict[str, ApiError] = {}  # "annotate" | "bind" | "get" → error raised once set
        self.calls: list[tuple[str, str, str]] = []
        self._rv = 0

    def _bump(self, pod: dict[str, Any]) -> None:
        self._rv += 1
        pod["metadata"]["resourceVersion"] = str(self._rv)

    def add(self, pod: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(pod)
        meta = pod.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        self._bump(pod)
        self.pods[(meta["namespace"], meta["name"])] = pod
        if self.on_change:
            self.on_change("ADDED", copy.deepcopy(pod))
        return pod

    def delete(self, namespace: str, name: str) -> None:
        pod = self.pods.pop((namespace, name), None)
        if pod is not None and self.on_change:
            self.on_change("DELETED", pod)

    async def _enter(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append((kind, namespace, name))
        if self.delay:
            await asyncio.sleep(self.delay)
        if kind in self.fail:
            raise self.fail[kind]
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise NotFoundError(404, f'pods "{name}" not found')
        return pod

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return copy.deepcopy(await self._enter("get", namespace, name))
        except NotFoundError:
            return None

    async def annotate(
        self,
        namespace: str,
        name: str,
        *,
        uid: str,
        resource_version: str | None,
        annotations: dict[str, str],
    ) -> None:
        pod = await self._enter("annotate", namespace, name)
        meta = pod["metadata"]
        if meta.get("uid") != uid:
            raise ApiError(422, "metadata.uid: field is immutable")
        if resource_version and meta["resourceVersion"] != resource_version:
            raise ConflictError(409, "the object has been modified")
        meta.setdefault("annotations", {}).update(annotations)
        self._bump(pod)
        if self.on_change:
            self.on_change("MODIFIED", copy.deepcopy(pod))

    async def bind(self, namespace: str, name: str, *, uid: str, node: str) -> None:
        pod = await self._enter("bind", namespace, name)
        if pod["metadata"].get("uid") != uid:
            raise ConflictError(409, "Precondition failed: UID in precondition does not match")
        spec = pod.setdefault("spec", {})
        if spec.get("nodeName"):
            raise ConflictError(409, f"pod {name} is already assigned to node {spec['nodeName']!r}")
        spec["nodeName"] = node
        self._bump(pod)
        if self.on_change:
            self.on_change("MODIFIED", copy.deepcopy(pod))
