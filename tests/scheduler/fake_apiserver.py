"""A tiny in-process kube-apiserver for nodes, pods, ResourceSlices and ResourceClaims: LIST (paged;
pods by `fieldSelector=spec.nodeName=`), WATCH (chunked JSON lines with bookmarks), GET, a merge PATCH
of a pod's annotations (a metadata.uid in it must match: 422 otherwise) and pods/binding (UID
precondition, annotations merged in the same update, as kube-apiserver v1.36 does) — enough to run
`gpuplace serve` end to end in a test.

`hold_bindings`: Bindings wait here uncommitted (the client times out) until `commit_late()` commits
them, as kube-apiserver finishes a request whose client has left, until the request's deadline."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web


class FakeApiServer:
    def __init__(self) -> None:
        self.rv = 1
        kinds = ("nodes", "pods", "configmaps", "resourceslices", "resourceclaims")
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in kinds}
        self.queues: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {k: [] for k in kinds}
        self.requests: list[tuple[str, str]] = []
        self.hold_bindings = False
        self.late: list[tuple[str, dict[str, Any]]] = []  # (namespace/name, Binding) held uncommitted

    def put(self, kind: str, obj: dict[str, Any], etype: str = "ADDED") -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if etype == "DELETED":
            self.objects[kind].pop(key, None)
        else:
            self.objects[kind][key] = obj
        for q in self.queues[kind]:
            q.put_nowait({"type": etype, "object": obj})
        return obj

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        self.requests.append((request.method, str(request.rel_url)))
        if request.query.get("watch") in ("true", "True", "1"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self.queues[kind].append(q)
            try:
                await resp.write(
                    orjson.dumps(
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(self.rv)}}}
                    )
                    + b"\n"
                )
                while True:
                    await resp.write(orjson.dumps(await q.get()) + b"\n")
            finally:
                self.queues[kind].remove(q)
        items = list(self.objects[kind].values())
        if kind == "pods" and request.query.get("fieldSelector") == "spec.nodeName=":
            items = [p for p in items if not (p.get("spec") or {}).get("nodeName")]
        return web.json_response(
            {"kind": "List", "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        )

    def _pod(self, request: web.Request) -> dict[str, Any]:
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        pod = self.objects["pods"].get(key)
        if pod is None:
            raise web.HTTPNotFound(
                text='{"kind":"Status","code":404,"message":"not found"}', content_type="application/json"
            )
        return pod

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._pod(request))

    async def _patch(self, request: web.Request) -> web.Response:
        pod = copy.deepcopy(self._pod(request))
        body = await request.json()
        self.requests.append(("PATCH", orjson.dumps(body).decode()))
        meta = body.get("metadata") or {}
        if meta.get("uid") not in (None, pod["metadata"]["uid"]):
            raise web.HTTPUnprocessableEntity(
                text='{"message":"metadata.uid: Invalid value: field is immutable"}',
                content_type="application/json",
            )
        annotations = pod["metadata"].setdefault("annotations", {})
        for k, v in (meta.get("annotations") or {}).items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
        return web.json_response(self.put("pods", pod, "MODIFIED"))

    async def _bind(self, request: web.Request) -> web.Response:
        binding = await request.json()
        self.requests.append(("BIND", orjson.dumps(binding).decode()))
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        if self.hold_bindings:  # the client gives up; commit_late() finishes the request later
            self.late.append((key, binding))
            await asyncio.Event().wait()
        self._commit(key, binding)
        return web.json_response({"kind": "Status", "status": "Success", "code": 201}, status=201)

    def _commit(self, key: str, binding: dict[str, Any]) -> None:
        pod = self.objects["pods"].get(key)
        if pod is None:
            raise web.HTTPNotFound(text='{"message":"not found"}', content_type="application/json")
        pod = copy.deepcopy(pod)
        if binding["metadata"].get("uid") not in (None, pod["metadata"]["uid"]):
            raise web.HTTPConflict(text='{"message":"Precondition failed"}')
        if pod["spec"].get("nodeName"):
            raise web.HTTPConflict(text='{"message":"already assigned"}')
        pod["spec"]["nodeName"] = binding["target"]["name"]
        pod["metadata"].setdefault("annotations", {}).update(binding["metadata"].get("annotations") or {})
        self.put("pods", pod, "MODIFIED")

    def commit_late(self) -> list[int]:
        """Commit the held Bindings now, in order; each one's status (201, 404, 409)."""
        out = []
        for key, binding in self.late:
            try:
                self._commit(key, binding)
                out.append(201)
            except web.HTTPException as e:
                out.append(e.status)
        self.late = []
        return out

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/{kind:nodes|pods|configmaps}", self._collection)
        app.router.add_get("/apis/resource.k8s.io/v1/{kind:resourceslices|resourceclaims}", self._collection)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get)
        app.router.add_patch("/api/v1/namespaces/{ns}/pods/{name}", self._patch)
        app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/binding", self._bind)
        return app


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        orjson.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "t",
                "clusters": [{"name": "t", "cluster": {"server": server}}],
                "users": [{"name": "t", "user": {"token": "test"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
            }
        ).decode()
    )
    return path
