"""Where the pages of a LIST go: applied one by one on the first list, collected on a relist.

Why: a LIST at 50,000 pods is ~150 MB of decoded Python objects (5,000 GPU Nodes another ~80 MB), and
holding every page until the list completes put that on top of the cache's own memory: the process's
peak, and — because the cache's records are allocated between the raw objects and pin their memory
pages — its resident size afterwards. On the first list after a start the cache holds nothing of that
kind, so nothing can be stale: each page is applied as it arrives and dropped, and the pods and nodes
the list does not show (none) are forgotten at the end. Nothing answers from the cache before the list
is done (`ClusterCache.ready`), and a list broken off half way leaves the cache unsynced, so the next
list replaces the whole picture. A relist (410 Gone) collects the pages and replaces the picture at
once as before (`replace_nodes` / `replace_pods`): pods deleted while the watch was down must be gone
before the pods that took their GPUs are counted, or the new pods' records would collide with them.

Pods with an exact `gpuplace.io/gpus` record go first within a page; a guessed pod of an earlier page
that collides with a later exact record is re-guessed around it (scheduler.cache: guesses yield to exact
records), so the picture is as valid as one built from the whole list at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from scheduler.cache import ClusterCache

Items = list[dict[str, Any]]


class ListSink(Protocol):
    """Takes one LIST's pages in order, then `done` once the list is complete."""

    def page(self, items: Items) -> None: ...

    def done(self) -> None: ...


class Collected:
    """All pages kept, handed to `replace` (a full-list replace) when the list is complete."""

    def __init__(self, replace: Callable[[Items], None]) -> None:
        self.replace = replace
        self.items: Items = []

    def page(self, items: Items) -> None:
        self.items.extend(items)

    def done(self) -> None:
        self.replace(self.items)


class NodePages:
    def __init__(self, cache: ClusterCache) -> None:
        self.cache = cache
        self.seen: set[str] = set()

    def page(self, items: Items) -> None:
        for n in items:
            self.seen.add(str((n.get("metadata") or {}).get("name") or ""))
            self.cache.apply_node("ADDED", n)

    def done(self) -> None:
        self.cache.drop_unlisted_nodes(self.seen)
        self.cache.synced["nodes"] = True


class PodPages:
    def __init__(self, cache: ClusterCache, listed_at: float) -> None:
        self.cache = cache
        self.listed_at = listed_at
        self.seen: set[str] = set()

    def page(self, items: Items) -> None:
        self.seen.update(str((p.get("metadata") or {}).get("uid") or "") for p in items)
        self.cache.apply_listed_pods(list(items))

    def done(self) -> None:
        self.cache.drop_unlisted_pods(self.seen, self.listed_at)
        self.cache.pods_listed()
