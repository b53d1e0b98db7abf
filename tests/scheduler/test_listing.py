"""The first LIST is applied page by page; a relist replaces the picture at once (scheduler.listing)."""

from __future__ import annotations

from typing import Any

from placement_core import Placement
from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.contract import encode_record
from scheduler.settings import SchedulerSettings, WatchSettings
from scheduler.watch import Reflector
from tests.scheduler import objects as o
from tests.scheduler.test_cache import FakeSource

WS = WatchSettings(page_size=50)


def exact(name: str, node: str, gpus: tuple[int, ...]) -> dict[str, Any]:
    record = {"gpuplace.io/gpus": encode_record(Placement(node=node, gpus=gpus), [])}
    return o.pod(name, gpus=len(gpus), node_name=node, annotations=record)


class CountingSource(FakeSource):
    """Notes how many pods and nodes the cache holds when each page is asked for."""

    def __init__(self, cache: Any, items: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(items, [])
        self.cache = cache
        self.held: list[tuple[int, int]] = []
        self.allocations: list[dict[str, Placement]] = []

    async def list(self, kind: str, *, limit: int, continue_token: str | None) -> dict[str, Any]:
        self.held.append((len(self.cache.nodes), len(self.cache.pods)))
        self.allocations.append(dict(self.cache.state.allocations))
        return await super().list(kind, limit=limit, continue_token=continue_token)


def fresh() -> ExtenderContext:
    ctx = ExtenderContext.build(SchedulerSettings(), MemoryBinder())
    ctx.warm = True
    return ctx


def reflectors(ctx: ExtenderContext, src: FakeSource) -> tuple[Reflector, Reflector]:
    c = ctx.cache
    nodes = Reflector("nodes", src, pages=lambda _t: c.node_pages(), on_event=c.apply_node, settings=WS)
    pods = Reflector("pods", src, pages=c.pod_pages, on_event=c.apply_pod, settings=WS)
    return nodes, pods


async def test_the_first_list_is_applied_page_by_page_and_equals_one_applied_at_once() -> None:
    """The old reflector held every page until the list was complete (the whole LIST in memory on top of
    the cache: 514 MiB at 50,000 pods in bench/extender_load.py). Each page is in the cache before the
    next is fetched, and the picture is the one `replace_pods` builds from the whole list."""
    nodes = [o.node(f"n{i:03d}") for i in range(120)]
    pods = [exact(f"p{i}", f"n{i % 120:03d}", (i // 120 * 2, i // 120 * 2 + 1)) for i in range(240)]
    pods += [o.pod(f"foreign{i}", gpus=2, node_name=f"n{i:03d}", phase="Running") for i in range(0, 120, 7)]
    ctx = fresh()
    src = CountingSource(ctx.cache, {"nodes": nodes, "pods": pods})
    r_nodes, r_pods = reflectors(ctx, src)
    await r_nodes.relist()
    await r_pods.relist()
    assert src.held == [(n, 0) for n in (0, 50, 100, 120)] + [(120, k) for k in (50, 100, 150, 200, 250)]
    ctx.cache.replace_slices([])
    ctx.cache.replace_claims([])
    assert ctx.cache.ready and ctx.cache.synced["nodes"] and ctx.cache.synced["pods"]
    at_once = fresh()
    at_once.cache.replace_nodes(nodes)
    at_once.cache.replace_pods(pods, listed_at=0.0)
    s, t = ctx.cache.state, at_once.cache.state
    assert set(ctx.cache.pods) == set(at_once.cache.pods) == {p["metadata"]["uid"] for p in pods}
    for p in pods[:240]:
        uid = p["metadata"]["uid"]
        assert s.allocations[uid] == t.allocations[uid]
    by_row = {n: s.gpu_free_milli[s.index[n]].tolist() for n in s.index}
    assert by_row == {n: t.gpu_free_milli[t.index[n]].tolist() for n in t.index}
    assert s.check_invariants() == [] and ctx.metrics.oversubscribed_total._value.get() == 0


async def test_a_guess_from_an_earlier_page_yields_to_an_exact_record_on_a_later_one() -> None:
    """Exact records go first only within a page: a foreign pod guessed on page 1 onto the GPUs a
    gpuplace pod of page 2 holds is re-guessed around it, never counted as oversubscribing."""
    nodes = [o.node("n")]
    filler = [o.pod(f"cpu{i}", gpus=0, node_name="n", phase="Running") for i in range(49)]
    theirs = o.pod("theirs", gpus=4, node_name="n", phase="Running")
    mine = exact("mine", "n", (0, 1, 2, 3))
    ctx = fresh()
    src = CountingSource(ctx.cache, {"nodes": nodes, "pods": [theirs, *filler, mine]})
    r_nodes, r_pods = reflectors(ctx, src)
    await r_nodes.relist()
    await r_pods.relist()
    assert src.allocations[-1][theirs["metadata"]["uid"]].gpus == (0, 1, 2, 3)  # the guess after page 1
    s = ctx.cache.state
    assert s.allocations[mine["metadata"]["uid"]].gpus == (0, 1, 2, 3)
    assert set(s.allocations[theirs["metadata"]["uid"]].gpus) == {4, 5, 6, 7}
    assert s.check_invariants() == [] and ctx.metrics.oversubscribed_total._value.get() == 0


async def test_a_relist_replaces_at_once_so_pods_gone_meanwhile_never_collide() -> None:
    """After 410 Gone the cache holds pods the new list may not show: the pages are collected and the
    gone pods forgotten before the pods that took their GPUs are counted."""
    nodes = [o.node("n")]
    old = exact("old", "n", (0, 1, 2, 3))
    ctx = fresh()
    src = CountingSource(ctx.cache, {"nodes": nodes, "pods": [old]})
    r_nodes, r_pods = reflectors(ctx, src)
    await r_nodes.relist()
    await r_pods.relist()
    filler = [o.pod(f"cpu{i}", gpus=0, node_name="n", phase="Running") for i in range(60)]
    new = exact("new", "n", (0, 1, 2, 3))
    src.items["pods"] = [*filler, new]  # "old" was deleted while the watch was down; "new" took its GPUs
    src.held.clear()
    await r_pods.relist()
    assert src.held == [(1, 1), (1, 1)]  # nothing applied until the list is complete
    s = ctx.cache.state
    assert "old" not in {r.name for r in ctx.cache.pods.values()}
    assert s.allocations[new["metadata"]["uid"]].gpus == (0, 1, 2, 3)
    assert s.check_invariants() == [] and ctx.metrics.oversubscribed_total._value.get() == 0
