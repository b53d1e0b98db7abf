"""Serving TLS for the webhook, with certificates reloaded when their files change.

Why polling: certificates come from a mounted Secret (cert-manager, or `gpuplace certs`). The kubelet
updates such a mount by swapping a symlink, which sends no inotify event on the files a process opened,
so the only reliable signal is the content. Every `interval` seconds the files are hashed; on a change
the new pair is first loaded into a scratch context (a half-written or mismatched pair is rejected there,
and the previous certificate keeps serving), then into the live context. Python's SSLContext applies a
new certificate to every later handshake, so the listening socket never restarts.
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


class ReloadingTLS:
    """A server SSLContext (TLS ≥ 1.2) that follows `cert_file` and `key_file`. The first load must succeed."""

    def __init__(self, *, cert_file: Path | str, key_file: Path | str) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._digest = self._read_digest()
        self.context.load_cert_chain(self.cert_file, self.key_file)
        self.reloads = 0

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
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert_file, self.key_file)
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            log.warning("new TLS files are not a valid pair yet (keeping the current certificate): %s", exc)
            return False
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
