"""A fake kube-apiserver for the owner reads: GET of single objects from a dict, with failure knobs."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "train", "namespace": "ns", "uid": "u1"},
    "spec": {"parallelism": 4},
}


class FakeApiserver:
    """Serves GET /apis/<group>/<version>/namespaces/<ns>/<plural>/<name> from a dict; counts requests."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {"/apis/batch/v1/namespaces/ns/jobs/train": JOB}
        self.status: int | None = None
        self.delay = 0.0
        self.gate: asyncio.Event | None = None  # when set, every answer waits for it
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        if self.status is not None:
            return web.json_response({"kind": "Status", "code": self.status}, status=self.status)
        if request.path not in self.objects:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        return web.json_response(self.objects[request.path])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
