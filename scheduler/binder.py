"""The two Kubernetes calls bind needs, behind a protocol, and an in-memory implementation.

Why a protocol: bind's correctness (no double booking, rollback on every failure, idempotent retries)
is tested by hammering it with hundreds of concurrent calls — that needs an API server that answers in
microseconds and fails on command. `MemoryBinder` is that: it keeps pods as dicts and does what
kube-apiserver v1.36's pods/binding does (pkg/registry/core/pod/storage/storage.go,
`BindingREST.setPodNodeAndMetadata`): one update that checks the Binding's metadata.uid (and
resourceVersion, when given) as preconditions, refuses a pod being deleted or already assigned (409),
sets spec.nodeName and merges the Binding's annotations into the pod. The real implementation is
scheduler.kubeapi.KubeBinder.

It also loses answers the way a network and a busy kube-apiserver do, for the bind-outcome tests:
`lose_answer` commits a Binding and raises an error in place of its answer (with `fail_after_commit`
failing the calls after it, e.g. the read that would tell); `hold_bindings` keeps Bindings uncommitted
until the caller gives up, and `commit_late` commits them afterwards, as kube-apiserver finishes a
request whose client has left (until the request's deadline).
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


class NotSentError(ApiError):
    """The request never reached the server (no connection could be made): surely not executed."""


class ConflictError(ApiError):
    """409: a failed UID (or resourceVersion) precondition, or the pod is already bound or being deleted."""


class NotFoundError(ApiError):
    """404: the pod is gone."""


def api_error(status: int, message: str) -> ApiError:
    cls = {404: NotFoundError, 409: ConflictError}.get(status, ApiError)
    return cls(status, message)


class Binder(Protocol):
    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as JSON, or None when it does not exist."""
        ...

    async def pending_pods(self) -> list[dict[str, Any]]:
        """Every pod not bound to a node (a consistent read: `fieldSelector=spec.nodeName=`)."""
        ...

    async def annotate_pod(self, namespace: str, name: str, *, uid: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into the pod, with its UID as a precondition: refused (422) when the pod
        was re-created under that name, 404 when it is gone."""
        ...

    async def bind(
        self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        """Create the pods/binding with `annotations` in its metadata: the API server sets spec.nodeName
        and merges them into the pod in one write. Fails (409) unless the pod's UID matches, the pod is
        unbound and not being deleted; 404 when it is gone."""
        ...


class MemoryBinder:
    """An in-memory API server for pods (tests, benchmarks). `fail` injects errors per call kind."""

    def __init__(
        self, *, delay: float = 0.0, on_change: Callable[[str, dict[str, Any]], None] | None = None
    ) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.delay = delay
        self.on_change = on_change  # e.g. cache.apply_pod, to play the watch
        self.fail: dict[str, ApiError] = {}  # "bind" | "get" | "annotate" | "list" → raised while set
        self.lose_answer: ApiError | None = None  # a Binding commits, then this is raised instead
        self.fail_after_commit: dict[str, ApiError] = {}  # merged into `fail` when a Binding commits
        self.hold_bindings = False  # Bindings wait in `late` (uncommitted) until the caller gives up
        self.late: list[tuple[str, str, str, str, dict[str, str]]] = []
        self.held = asyncio.Event()  # set when a Binding is held
        self.calls: list[tuple[str, str, str]] = []
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}  # ResourceClaims by (namespace, name)
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

    async def pending_pods(self) -> list[dict[str, Any]]:
        self.calls.append(("list", "", ""))
        if "list" in self.fail:
            raise self.fail["list"]
        return [copy.deepcopy(p) for p in self.pods.values() if not (p.get("spec") or {}).get("nodeName")]

    async def annotate_pod(self, namespace: str, name: str, *, uid: str, annotations: dict[str, str]) -> None:
        pod = await self._enter("annotate", namespace, name)
        if pod["metadata"].get("uid") != uid:  # a patch changing the immutable UID: 422 Invalid
            raise ApiError(422, f'Pod "{name}" is invalid: metadata.uid: Invalid value: field is immutable')
        pod["metadata"].setdefault("annotations", {}).update(annotations)
        self._bump(pod)
        if self.on_change:
            self.on_change("MODIFIED", copy.deepcopy(pod))

    async def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get-claim", namespace, name))
        if "get-claim" in self.fail:
            raise self.fail["get-claim"]
        claim = self.claims.get((namespace, name))
        return copy.deepcopy(claim) if claim is not None else None

    async def patch_pod_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into the pod (gang nudges); a missing pod is not an error."""
        try:
            pod = await self._enter("patch", namespace, name)
        except NotFoundError:
            return
        pod["metadata"].setdefault("annotations", {}).update(annotations)
        self._bump(pod)
        if self.on_change:
            self.on_change("MODIFIED", copy.deepcopy(pod))

    async def bind(
        self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        await self._enter("bind", namespace, name)
        if self.hold_bindings:  # the server works on it; the caller gives up (cancels) first
            self.late.append((namespace, name, uid, node, annotations))
            self.held.set()
            await asyncio.Event().wait()
        self._commit(namespace, name, uid=uid, node=node, annotations=annotations)
        if self.lose_answer is not None:
            self.fail.update(self.fail_after_commit)
            raise self.lose_answer

    def commit_late(self) -> list[ApiError | None]:
        """Apply the held Bindings now, in order (each one's server-side outcome: None = committed)."""
        out: list[ApiError | None] = []
        for namespace, name, uid, node, extra in self.late:
            try:
                self._commit(namespace, name, uid=uid, node=node, annotations=extra)
                out.append(None)
            except ApiError as e:
                out.append(e)
        self.late = []
        return out

    def _commit(self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]) -> None:
        """BindingREST.setPodNodeAndMetadata: the preconditions, then one update."""
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise NotFoundError(404, f'pods "{name}" not found')
        meta = pod["metadata"]
        if meta.get("uid") != uid:
            raise ConflictError(409, "Precondition failed: UID in precondition does not match")
        if meta.get("deletionTimestamp"):
            raise ConflictError(409, f"pod {name} is being deleted, cannot be assigned to a host")
        spec = pod.setdefault("spec", {})
        if spec.get("nodeName"):
            raise ConflictError(409, f"pod {name} is already assigned to node {spec['nodeName']!r}")
        spec["nodeName"] = node
        meta.setdefault("annotations", {}).update(annotations)
        self._bump(pod)
        if self.on_change:
            self.on_change("MODIFIED", copy.deepcopy(pod))
