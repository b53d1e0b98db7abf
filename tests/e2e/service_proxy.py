"""A stand-in for a Service's routing in the HA tests (test harness only; not part of gpuplace).

There is no pod network and no kube-proxy here. kube-proxy sends each NEW connection to one of the
Service's ready endpoints and keeps an established connection on the endpoint it chose (conntrack):
exactly what this does. Readiness is each backend's /readyz (what the kubelet's readiness probe would
put into the EndpointSlice), polled every `probe_interval` seconds; a new connection goes to the
first ready backend; an established one is never moved. So kube-scheduler's keep-alive connection
to a leader that stops leading stays on that replica, as in a cluster, and gpuplace must close it.

Runs in its own thread with its own event loop so a test's synchronous waits do not stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=1.0) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ServiceProxy:
    """`with ServiceProxy(["http://127.0.0.1:p1", ...]) as proxy:` → `proxy.url` behaves like the Service."""

    def __init__(self, backends: Sequence[str], *, probe_interval: float = 0.5) -> None:
        self.backends = list(backends)
        self.probe_interval = probe_interval
        self.ready: list[str] = []
        self.connections: dict[str, int] = dict.fromkeys(self.backends, 0)  # new connections routed per backend
        self.refused = 0  # connections that found no ready backend
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="service-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._prober: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServiceProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._prober = asyncio.ensure_future(self._probe_forever())

    async def _stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
        if self._server is not None:
            self._server.close()

    async def _probe_forever(self) -> None:
        while True:
            states = await asyncio.gather(*(asyncio.to_thread(_ready, b) for b in self.backends))
            self.ready = [b for b, ok in zip(self.backends, states, strict=True) if ok]
            await asyncio.sleep(self.probe_interval)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ready = list(self.ready)
        if not ready:
            self.refused += 1
            writer.close()
            return
        backend = ready[0]
        self.connections[backend] += 1
        host, port = backend.rsplit("//", 1)[1].split(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
