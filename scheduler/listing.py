"""What a LIST does to the cache: its pages applied one by one on the first list, collected on a relist.

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

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from scheduler.reservations import Reservation, ReservationState

if TYPE_CHECKING:
    from scheduler.cache import CacheHooks, PodObserver, PodRecord
    from scheduler.dra.state import DraState
    from scheduler.nodeinv import NodeInventory
    from scheduler.nominated import Nominations
    from scheduler.podreq import Rules

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
    def __init__(self, cache: ListApply) -> None:
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
    def __init__(self, cache: ListApply, listed_at: float) -> None:
        self.cache = cache
        self.listed_at = listed_at
        self.seen: set[str] = set()

    def page(self, items: Items) -> None:
        self.seen.update(str((p.get("metadata") or {}).get("uid") or "") for p in items)
        self.cache.apply_listed_pods(list(items))

    def done(self) -> None:
        self.cache.drop_unlisted_pods(self.seen, self.listed_at)
        self.cache.pods_listed()


class ListApply:
    """The full-list methods of ClusterCache (which provides these attributes): a LIST's pages go to
    `node_pages` / `pod_pages`; `replace_nodes` / `replace_pods` replace the picture from a whole list."""

    nodes: dict[str, NodeInventory]
    pods: dict[str, PodRecord]
    synced: dict[str, bool]
    reservations: dict[str, Reservation]
    hooks: CacheHooks
    nominated: Nominations
    pod_observer: PodObserver | None
    pod_rules: Rules
    dra: DraState | None
    _live: set[str]

    if TYPE_CHECKING:

        def apply_node(self, etype: str, node: dict[str, Any], *, from_watch: bool = True) -> None: ...

        def _remove_node(self, name: str) -> None: ...

        def apply_pod(self, etype: str, pod: dict[str, Any]) -> None: ...

        def forget_pod(self, uid: str) -> None: ...

        def dra_changed(self, nodes: set[str], *, hardware: bool = False) -> None: ...

    def replace_nodes(self, items: Iterable[dict[str, Any]]) -> None:
        """A full list: nodes absent from it are gone."""
        items = list(items)
        self.drop_unlisted_nodes({str((n.get("metadata") or {}).get("name") or "") for n in items})
        for n in items:
            self.apply_node("ADDED", n)
        self.synced["nodes"] = True

    def drop_unlisted_nodes(self, seen: set[str]) -> None:
        for name in [n for n in self.nodes if n not in seen]:
            self._remove_node(name)

    def node_pages(self) -> ListSink:
        """Where a node LIST's pages go (scheduler.listing): applied page by page on the first list."""
        if not self.nodes and not self.synced["nodes"]:
            return NodePages(self)
        return Collected(self.replace_nodes)

    def replace_pods(self, items: Iterable[dict[str, Any]], *, listed_at: float) -> None:
        """A full list (taken at `listed_at`): pods absent from it are gone; exact records first."""
        items = list(items)
        self.drop_unlisted_pods({str((p.get("metadata") or {}).get("uid") or "") for p in items}, listed_at)
        self.apply_listed_pods(items)
        self.pods_listed()

    def pod_pages(self, listed_at: float) -> ListSink:
        """Where a pod LIST's pages go (scheduler.listing): applied page by page on the first list."""
        if not self.pods and not self.synced["pods"]:
            return PodPages(self, listed_at)
        return Collected(lambda items: self.replace_pods(items, listed_at=listed_at))

    def drop_unlisted_pods(self, seen: set[str], listed_at: float) -> None:
        """Forget the pods a full list (taken at `listed_at`) does not show, and their reservations
        older than the list."""
        for uid in [u for u in self.pods if u not in seen]:
            self.forget_pod(uid)
        self._live &= seen
        self.nominated.retain(seen)
        for uid in [
            u
            for u, r in self.reservations.items()
            if u not in seen and r.created < listed_at and r.state != ReservationState.WRITING
        ]:
            self.forget_pod(uid)
            self.hooks.reservation_rolled_back("pod gone at relist")
        if self.pod_observer is not None:
            self.pod_observer.retain(seen)

    def apply_listed_pods(self, items: list[dict[str, Any]]) -> None:
        """Listed pods, those with an exact record first (guesses then go around them)."""
        key = self.pod_rules.keys.gpus
        items.sort(key=lambda p: key not in ((p.get("metadata") or {}).get("annotations") or {}))
        for p in items:
            self.apply_pod("ADDED", p)

    def pods_listed(self) -> None:
        self.synced["pods"] = True
        if self.dra is not None:  # claims of pods the list shows gone now release (and the others bind)
            self.dra_changed(self.dra.nodes_with_claims() | self.dra.rebind_all())
