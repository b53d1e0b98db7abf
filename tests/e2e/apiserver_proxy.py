"""A fault-injecting HTTPS proxy between gpuplace and kube-apiserver (test harness only, not the product).

gpuplace's kubeconfig points here; every request is forwarded to the real kube-apiserver (bodies and
watch streams pass through unchanged, the bearer token included), except where a test arms a fault on a
pod's `pods/binding` POST:

- `drop_binding(name)`: the next Binding POST for the pod is read and its connection closed; it is
  never forwarded (a request lost on the way), and GETs of that pod answer 503 until its next
  Binding POST arrives — the client can tell nothing;
- `lose_binding_answer(name)`: the next Binding POST for the pod is forwarded and commits, then its
  answer is dropped (connection closed) and GETs of the pod answer 503 until its next Binding POST;
- `hold_bindings(name)`: Binding POSTs for the pod wait here, unforwarded, while the client times
  out; `release()` forwards them afterwards on the proxy's own connection — kube-apiserver then
  commits a Binding whose client gave up long ago, as it does with any request still in its deadline.

It runs its own event loop in a thread, so it outlives the tests' per-test loops; the fault tables
are guarded by a lock and read by the tests through `held_count`/`log`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

_BINDING = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/binding")
_POD = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)")
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_UNAVAILABLE = b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected","code":503}'


@dataclass
class _Held:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultProxy:
    upstream: str  # https://127.0.0.1:<kube-apiserver port>
    ca_file: Path
    cert_file: Path
    key_file: Path
    port: int = 0
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status); -1 = dropped
    _drop: set[str] = field(default_factory=set)
    _lose: set[str] = field(default_factory=set)
    _fail_get: set[str] = field(default_factory=set)
    _hold: set[str] = field(default_factory=set)
    _held: list[_Held] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _session: aiohttp.ClientSession | None = None

    # ----- faults (called from the test's thread) ---------------------------------------------------

    def drop_binding(self, name: str) -> None:
        with self._lock:
            self._drop.add(name)

    def lose_binding_answer(self, name: str) -> None:
        with self._lock:
            self._lose.add(name)

    def hold_bindings(self, name: str) -> None:
        with self._lock:
            self._hold.add(name)

    @property
    def held_count(self) -> int:
        with self._lock:
            return len(self._held)

    def bindings(self, name: str) -> list[int]:
        """Statuses of the pod's Binding POSTs as kube-apiserver answered them (-1: dropped here)."""
        with self._lock:
            return [s for m, p, s in self.log if m == "POST" and p.split("?", 1)[0] == f"binding/{name}"]

    def binding_queries(self, name: str) -> list[str]:
        """The query strings of the pod's Binding POSTs."""
        with self._lock:
            return [
                p.partition("?")[2]
                for m, p, _ in self.log
                if m == "POST" and p.split("?", 1)[0] == f"binding/{name}"
            ]

    def release(self) -> list[int]:
        """Stop holding; forward the held Bindings now, in order; their statuses from kube-apiserver."""
        assert self._loop is not None
        with self._lock:
            held, self._held, self._hold = self._held, [], set()
        future = asyncio.run_coroutine_threadsafe(self._forward_all(held), self._loop)
        return future.result(timeout=60)

    # ----- serving -----------------------------------------------------------------------------------

    async def _forward_all(self, held: list[_Held]) -> list[int]:
        out = []
        for h in held:
            status, _, _ = await self._send(h.method, h.path_qs, h.headers, h.body)
            self._record(h.method, h.path_qs, status)
            out.append(status)
        return out

    def _record(self, method: str, path_qs: str, status: int) -> None:
        m = _BINDING.fullmatch(path_qs.split("?", maxsplit=1)[0])
        path = f"binding/{m[2]}?{path_qs.partition('?')[2]}" if m else path_qs
        with self._lock:
            self.log.append((method, path, status))

    async def _send(
        self, method: str, path_qs: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        async with self._session.request(method, self.upstream + path_qs, headers=headers, data=body) as r:
            return r.status, dict(r.headers), await r.read()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        binding = _BINDING.fullmatch(request.path) if request.method == "POST" else None
        pod = _POD.fullmatch(request.path) if request.method == "GET" else None
        if binding is not None:
            name = binding[2]
            with self._lock:
                self._fail_get.discard(name)
                drop, lose = name in self._drop, name in self._lose
                self._drop.discard(name)
                self._lose.discard(name)
                hold = False
                if drop or lose:
                    self._fail_get.add(name)
                elif name in self._hold:
                    self._held.append(_Held(request.method, request.path_qs, headers, body))
                    hold = True
            if drop:
                self._record("POST", request.path_qs, -1)
                assert request.transport is not None
                request.transport.close()  # the request is gone; so is any answer
                return web.Response(status=503)
            if hold:  # the client times out; release() forwards it later
                await asyncio.Event().wait()
            if lose:  # kube-apiserver commits it; the answer never reaches the client
                status, _, _ = await self._send(request.method, request.path_qs, headers, body)
                self._record("POST", request.path_qs, status)
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=503)
        if pod is not None:
            with self._lock:
                fail = pod[2] in self._fail_get
            if fail:
                self._record("GET", request.path_qs, 503)
                return web.Response(status=503, body=_UNAVAILABLE, content_type="application/json")
        assert self._session is not None
        upstream = await self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        )
        try:
            if binding is not None:
                self._record("POST", request.path_qs, upstream.status)
            resp = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP},
            )
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():  # watch streams pass through as they come
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            upstream.release()

    async def _serve(self, started: threading.Event, stop: asyncio.Event) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx), auto_decompress=False, timeout=aiohttp.ClientTimeout()
        )
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(self.cert_file), str(self.key_file))
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=serving)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        started.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await self._session.close()

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        started = threading.Event()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        self._loop = loop
        thread = threading.Thread(
            target=loop.run_until_complete,
            args=(self._serve(started, stop),),
            daemon=True,
            name="fault-proxy",
        )
        thread.start()
        if not started.wait(30):
            raise RuntimeError("the fault proxy did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(30)
            with suppress(RuntimeError):
                loop.close()
