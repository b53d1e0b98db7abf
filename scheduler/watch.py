"""List+watch loops (reflectors) that feed the ClusterCache, with relist on 410 Gone and backoff.

Why not kubernetes_asyncio's `Watch`: it deserialises every event into generated model classes (slow
for 20,000 pods, and we want the raw JSON anyway), and on 410 it retries once from the same too-old
resourceVersion instead of relisting. The `Source` protocol below is the raw transport — the real one
(scheduler.kubeapi.KubeSource) uses kubernetes_asyncio's client for auth and TLS; tests replay
recorded event dicts.

The loop, per kind (nodes, pods):
1. LIST (paged, one consistent snapshot) → `on_list(items, listed_at)` replaces the cache's picture, or
   each page goes to a `pages(listed_at)` sink as it arrives (scheduler.listing: the first list of
   pods and nodes is applied page by page, so the whole list is never held at once);
2. WATCH from the list's resourceVersion with bookmarks; each event → `on_event(type, object)`;
   BOOKMARK only advances the resourceVersion; a stream ending (server timeout) re-watches from it;
3. 410 Gone (as an ERROR event, or as the watch/list response) → back to 1;
4. any other error → retry after a jittered, doubling delay (reset after a healthy stream).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from scheduler.listing import Collected, ListSink
from scheduler.settings import WatchSettings

log = logging.getLogger("gpuplace.scheduler.watch")


class GoneError(Exception):
    """410: the resourceVersion (or continue token) is too old; relist."""


class Source(Protocol):
    async def list(self, kind: str, *, limit: int, continue_token: str | None) -> dict[str, Any]:
        """One LIST page as raw JSON: {"metadata": {"resourceVersion", "continue"}, "items": [...]}."""
        ...

    def watch(
        self, kind: str, *, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw watch events {"type": ..., "object": {...}} until the server ends the stream."""
        ...


class Reflector:
    def __init__(
        self,
        kind: str,
        source: Source,
        *,
        on_list: Callable[[list[dict[str, Any]], float], None] | None = None,
        pages: Callable[[float], ListSink] | None = None,
        on_event: Callable[[str, dict[str, Any]], None],
        settings: WatchSettings,
        on_restart: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.kind = kind
        self.source = source
        if (on_list is None) == (pages is None):
            raise ValueError("a Reflector takes on_list or pages, not both")
        self.on_list = on_list
        self.pages = pages
        self.on_event = on_event
        self.settings = settings
        self.on_restart = on_restart or (lambda why: None)
        self.clock = clock
        self.sleep = sleep
        self.resource_version: str | None = None
        self.lists = 0  # completed LISTs (tests and metrics)

    async def relist(self) -> None:
        listed_at = self.clock()
        if self.pages is not None:
            sink = self.pages(listed_at)
        else:
            on_list = self.on_list
            assert on_list is not None
            sink = Collected(lambda items: on_list(items, listed_at))
        token: str | None = None
        rv = ""
        n = 0
        while True:
            page = await self.source.list(self.kind, limit=self.settings.page_size, continue_token=token)
            meta = page.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            items = page.get("items") or []
            n += len(items)
            sink.page(items)
            del page, items  # a page's objects go before the next page arrives (scheduler.listing)
            token = meta.get("continue") or None
            if not token:
                break
        sink.done()
        self.resource_version = rv
        self.lists += 1
        log.info("listed %d %s at resourceVersion %s", n, self.kind, rv)

    async def watch_once(self) -> int:
        """One watch stream from the current resourceVersion; returns events applied. Raises GoneError."""
        assert self.resource_version is not None
        n = 0
        stream = self.source.watch(
            self.kind, resource_version=self.resource_version, timeout_seconds=self.settings.timeout_seconds
        )
        async for ev in stream:
            etype = ev.get("type")
            obj = ev.get("object") or {}
            if etype == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise GoneError(obj.get("message", "resourceVersion too old"))
                raise RuntimeError(f"watch {self.kind}: error event {code}: {obj.get('message')}")
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if etype != "BOOKMARK":
                self.on_event(str(etype), obj)
                n += 1
            if rv:
                self.resource_version = str(rv)
        return n

    async def run(self) -> None:
        """Forever: list, watch, relist on GoneError, back off on errors. Cancel to stop."""
        delay = self.settings.backoff_initial_seconds
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                await self.watch_once()
                delay = self.settings.backoff_initial_seconds
            except asyncio.CancelledError:
                raise
            except GoneError as e:
                log.info("watch %s: %s; relisting", self.kind, e)
                self.on_restart("gone")
                self.resource_version = None
            except Exception as e:
                log.warning("watch %s failed: %s; retrying in %.1fs", self.kind, e, delay)
                self.on_restart("error")
                await self.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.settings.backoff_max_seconds)
