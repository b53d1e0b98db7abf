"""Serving TLS for the webhook, with certificates reloaded when their files change.

Why polling: certificates come from a mounted Secret (cert-manager, or `gpuplace certs`). The kubelet
updates such a mount by swapping a symlink, which sends no inotify event on the files a process opened,
so the only reliable signal is the content. Every `interval` seconds the files are hashed.

Why a new context per load, swapped in by an SNI callback: loading into the context a server is using
is not atomic. `load_cert_chain` installs the certificate before it checks the key, so a pair read
half-way through the Secret's symlink swap leaves that context with a certificate and no matching key,
and every handshake fails until the next good load. So each change is loaded into a fresh SSLContext; only
a context that loaded completely replaces the current one (one reference assignment). The server keeps
the context it was started with (aiohttp hands it to `loop.create_server`, which holds it), so that
context has an `sni_callback`, which OpenSSL calls at the start of every handshake, SNI or not, and
which sets the current context on the connection's SSLObject (the mechanism the ssl module documents
for choosing a certificate per connection). New handshakes get the new certificate; established
connections keep theirs; the listening socket never restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context (TLS >= 1.2) holding this pair. Raises ssl.SSLError or OSError if it is not one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingTLS:
    """Serving TLS that follows `cert_file` and `key_file`. The first load must succeed.

    `context` is what the server is started with; it never changes. `current` is the context holding
    the newest valid pair, which every new handshake switches to."""

    def __init__(self, *, cert_file: Path | str, key_file: Path | str) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._digest = self._read_digest()
        self.current = _server_context(self.cert_file, self.key_file)
        self.context = _server_context(self.cert_file, self.key_file)
        self.context.sni_callback = self._choose
        self.reloads = 0

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = self.current

    def _read_digest(self) -> bytes:
        digest = hashlib.sha256(self.cert_file.read_bytes())
        digest.update(b"\0")
        digest.update(self.key_file.read_bytes())
        return digest.digest()

    def reload_if_changed(self) -> bool:
        """Load the files again if their content changed and they form a valid pair. Never raises."""
        try:
            digest = self._read_digest()
        except OSError as exc:
            log.warning("cannot read TLS files (keeping the current certificate): %s", exc)
            return False
        if digest == self._digest:
            return False
        try:
            fresh = _server_context(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            log.warning("new TLS files are not a valid pair yet (keeping the current certificate): %s", exc)
            return False
        self.current = fresh
        self._digest = digest
        with contextlib.suppress(OSError):
            if self._read_digest() != digest:  # changed again while loading: load once more next time
                self._digest = b""
        self.reloads += 1
        log.info("reloaded the webhook's TLS certificate from %s", self.cert_file)
        return True

    async def watch(self, *, interval: float = 10.0) -> None:
        """Poll forever; cancel to stop."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


def reload_ctx(
    tls: ReloadingTLS, *, interval: float = 10.0
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx entry running `tls.watch` for the application's lifetime."""

    async def certificate_reloader(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(tls.watch(interval=interval), name="gpuplace-webhook-tls-reload")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return certificate_reloader
