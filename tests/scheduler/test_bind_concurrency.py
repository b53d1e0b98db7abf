"""Hammer bind: many concurrent binds (and retries, and API failures) on one node never double-book."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from scheduler.binder import ApiError, MemoryBinder
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx


class FlakyBinder(MemoryBinder):
    """Random latency on every call, and a share of Binding calls refused with a 429 (surely not written: a 5xx now keeps the GPUs held)."""

    def __init__(self, rng: random.Random, failure_rate: float) -> None:
        super().__init__()
        self.rng = rng
        self.failure_rate = failure_rate

    async def _enter(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        await asyncio.sleep(self.rng.uniform(0, 0.003))
        if kind != "get" and self.rng.random() < self.failure_rate:
            raise ApiError(429, "injected")
        return await super()._enter(kind, namespace, name)


def bind_args(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": "default", "PodUID": m["uid"], "Node": node}
    )


async def test_hammering_one_node_never_double_books() -> None:
    rng = random.Random(7)
    ctx = make_ctx([o.node("n", gpus=8)])
    binder = FlakyBinder(rng, failure_rate=0.2)
    binder.on_change = ctx.cache.apply_pod
    ctx.binder = binder
    pods = [binder.add(o.pod(f"p{i}", gpus=rng.choice([1, 1, 2, 3]))) for i in range(60)]
    for p in pods:
        filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=["n"])), ctx)
    calls = [bind(bind_args(p, "n"), ctx) for p in pods for _ in range(rng.choice([1, 1, 2, 3]))]  # retries
    rng.shuffle(calls)
    results = await asyncio.gather(*calls)
    assert any(r.error == "" for r in results) and any(r.error for r in results)
    state = ctx.cache.state
    assert state.check_invariants() == []
    assert ctx.cache.reservations == {} and ctx.binds_inflight == {}
    taken: list[int] = []
    for (_, name), stored in binder.pods.items():
        ann = stored["metadata"].get("annotations", {}).get("gpuplace.io/gpus")
        if stored["spec"].get("nodeName"):
            taken += orjson.loads(ann)["gpus"]
            assert state.allocations[stored["metadata"]["uid"]].gpus == tuple(orjson.loads(ann)["gpus"]), name
    assert len(taken) == len(set(taken)) <= 8
    free = state.gpu_free_milli[state.index["n"], :8]
    assert sorted(g for g in range(8) if free[g] == 0) == sorted(taken)


class OverlapBinder(MemoryBinder):
    """Every Binding write stays open for `turns` passes of the event loop (no wall clock), counts how many
    writes are open at once, and makes the `doomed` pods' writes fail (429) after they overlapped others."""

    def __init__(self, *, turns: int = 50, doomed: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.turns = turns
        self.doomed = doomed
        self.inflight = 0
        self.max_inflight = 0

    async def bind(
        self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            for _ in range(self.turns):  # every other ready task runs in between
                await asyncio.sleep(0)
            if name in self.doomed:
                raise ApiError(429, "injected")
            await super().bind(namespace, name, uid=uid, node=node, annotations=annotations)
        finally:
            self.inflight -= 1


async def test_binds_to_different_nodes_do_not_wait_for_each_other() -> None:
    ctx = make_ctx([o.node(f"n{i}") for i in range(8)])
    binder = OverlapBinder()
    binder.on_change = ctx.cache.apply_pod
    ctx.binder = binder
    pods = [binder.add(o.pod(f"p{i}", gpus=1)) for i in range(8)]
    results = await asyncio.gather(*(bind(bind_args(p, f"n{i}"), ctx) for i, p in enumerate(pods)))
    assert all(r.error == "" for r in results)
    assert binder.max_inflight == 8  # all eight writes open at once: no lock wider than one node


async def test_binds_to_one_node_overlap_their_api_writes_without_double_booking() -> None:
    """The node lock covers choose + reserve only: 24 binds (40 GPUs asked, 8 present) to one node with a
    slow API server write concurrently (several writes open at once), yet exactly the GPUs of the successful binds are taken, once
    each, and the failed writes (rolled back while others were in flight) free only their own GPUs."""
    rng = random.Random(11)
    ctx = make_ctx([o.node("n", gpus=8)])
    pods = [o.pod(f"p{i}", gpus=rng.choice([1, 1, 2, 3])) for i in range(24)]
    doomed = {p["metadata"]["name"] for p in pods[::5]}
    binder = OverlapBinder(doomed=frozenset(doomed))
    binder.on_change = ctx.cache.apply_pod
    ctx.binder = binder
    pods = [binder.add(p) for p in pods]
    for p in pods:
        filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=["n"])), ctx)
    calls = [bind(bind_args(p, "n"), ctx) for p in pods for _ in range(rng.choice([1, 2]))]
    results = await asyncio.gather(*calls)
    assert binder.max_inflight > 1, "binds to one node serialised behind each other's API write"
    ok = [r for r in results if r.error == ""]
    assert (
        ok
        and any("no longer fits" in r.error for r in results)
        and any("injected" in r.error for r in results)
    )
    state = ctx.cache.state
    assert state.check_invariants() == []
    assert ctx.cache.reservations == {} and ctx.binds_inflight == {}
    taken: list[int] = []
    for (_, name), stored in binder.pods.items():
        ann = stored["metadata"].get("annotations", {}).get("gpuplace.io/gpus")
        if stored["spec"].get("nodeName"):
            assert name not in doomed
            gpus = orjson.loads(ann)["gpus"]
            taken += gpus
            assert state.allocations[stored["metadata"]["uid"]].gpus == tuple(gpus), name
        else:
            assert ann is None, name  # the record exists only on bound pods
            assert stored["metadata"]["uid"] not in state.allocations, name
    assert len(taken) == len(set(taken)) <= 8
    free = state.gpu_free_milli[state.index["n"], :8]
    assert sorted(g for g in range(8) if free[g] == 0) == sorted(taken)
