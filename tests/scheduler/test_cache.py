"""The cluster cache fed by recorded list/watch traffic: what counts, what is released, relists and 410s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gpuplace.localcluster.waiting import wait_until
from placement_core import Placement
from scheduler.contract import encode_record
from scheduler.settings import SchedulerSettings, WatchSettings
from scheduler.watch import GoneError, Reflector
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

GPUS = "gpuplace.io/gpus"


def free(ctx: Any, node: str) -> list[int]:
    s = ctx.cache.state
    return s.gpu_free_milli[s.index[node], :8].tolist()


def record(node: str, gpus: tuple[int, ...], milli: int = 1000) -> dict[str, str]:
    return {GPUS: encode_record(Placement(node=node, gpus=gpus, milli=milli), [])}


class FakeSource:
    """Replays a recorded LIST and a script of watch streams (one list of events per watch call)."""

    def __init__(self, items: dict[str, list[dict[str, Any]]], streams: list[list[dict[str, Any]]]) -> None:
        self.items = items
        self.streams = streams
        self.lists: list[tuple[str, str | None]] = []
        self.watches: list[str] = []

    async def list(self, kind: str, *, limit: int, continue_token: str | None) -> dict[str, Any]:
        self.lists.append((kind, continue_token))
        items = self.items[kind]
        start = int(continue_token or 0)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "metadata": {"resourceVersion": "100", "continue": str(start + limit) if more else ""},
            "items": page,
        }

    async def watch(
        self, kind: str, *, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        self.watches.append(resource_version)
        if not self.streams:
            await asyncio.Event().wait()  # an idle stream
        for ev in self.streams.pop(0):
            if ev.get("raise") == 410:
                raise GoneError("too old")
            if ev.get("raise"):
                raise ConnectionError("reset")
            yield ev


def test_exact_records_foreign_totals_and_release_on_finish() -> None:
    ctx = make_ctx([o.node("n")])
    c = ctx.cache
    c.apply_pod("ADDED", o.pod("mine", gpus=2, node_name="n", annotations=record("n", (5, 6))))
    assert free(ctx, "n") == [1000] * 5 + [0, 0, 1000]
    c.apply_pod("ADDED", o.pod("theirs", gpus=3, node_name="n", phase="Running"))
    assert sum(f == 0 for f in free(ctx, "n")) == 5
    done = o.pod("theirs", gpus=3, node_name="n", phase="Succeeded")
    done["metadata"]["uid"] = next(u for u, r in c.pods.items() if r.name == "theirs")
    c.apply_pod("MODIFIED", done)
    assert sum(f == 0 for f in free(ctx, "n")) == 2
    assert c.state.check_invariants() == []


def test_pending_pods_hold_nothing_and_terminating_pods_keep_their_gpus() -> None:
    ctx = make_ctx([o.node("n")])
    ctx.cache.apply_pod("ADDED", o.pod("pending", gpus=8))
    assert free(ctx, "n") == [1000] * 8
    term = o.pod("term", gpus=8, node_name="n", phase="Running")
    ctx.cache.apply_pod("ADDED", term)
    term["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ctx.cache.apply_pod("MODIFIED", term)
    assert free(ctx, "n") == [0] * 8
    ctx.cache.apply_pod("DELETED", term)
    assert free(ctx, "n") == [1000] * 8


def test_exact_record_displaces_a_guess() -> None:
    ctx = make_ctx([o.node("n")])
    ctx.cache.apply_pod("ADDED", o.pod("theirs", gpus=1, node_name="n"))
    guessed = next(iter(ctx.cache.state.allocations.values())).gpus[0]
    ctx.cache.apply_pod("ADDED", o.pod("mine", gpus=1, node_name="n", annotations=record("n", (guessed,))))
    assert sum(f == 0 for f in free(ctx, "n")) == 2
    assert ctx.cache.state.check_invariants() == []


def test_oversubscription_is_recorded_not_refused() -> None:
    ctx = make_ctx([o.node("n", gpus=2)])
    ctx.cache.apply_pod("ADDED", o.pod("a", gpus=2, node_name="n", annotations=record("n", (0, 1))))
    ctx.cache.apply_pod("ADDED", o.pod("b", gpus=2, node_name="n", annotations=record("n", (0, 1))))
    assert ctx.cache.state.check_invariants() != []
    assert ctx.metrics.oversubscribed_total._value.get() == 1


def test_pods_on_unknown_nodes_count_when_the_node_arrives_and_node_churn() -> None:
    ctx = make_ctx([])
    ctx.cache.apply_pod(
        "ADDED", o.pod("early", gpus=4, node_name="late", annotations=record("late", (0, 1, 2, 3)))
    )
    ctx.cache.apply_node("ADDED", o.node("late"))
    assert free(ctx, "late") == [0] * 4 + [1000] * 4
    gen = ctx.cache.index_gen
    ctx.cache.apply_node("MODIFIED", o.node("late"))  # same content, new resourceVersion: no change
    assert ctx.cache.index_gen == gen
    ctx.cache.apply_node("DELETED", o.node("late"))
    assert "late" not in ctx.cache.state.index
    ctx.cache.apply_node("ADDED", o.node("late"))
    assert free(ctx, "late") == [0] * 4 + [1000] * 4


def test_relist_forgets_what_disappeared_but_not_young_reservations() -> None:
    ctx = make_ctx([o.node("a"), o.node("b")], [o.pod("gone", gpus=8, node_name="a")])
    ctx.cache.reserve("young", "default", "y", Placement(node="b", gpus=(0,)))
    ctx.cache.bound("young")
    ctx.cache.replace_nodes([o.node("b")])
    ctx.cache.replace_pods([], listed_at=-1.0)  # list started before the reservation
    assert "a" not in ctx.cache.state.index and ctx.cache.pods == {}
    assert "young" in ctx.cache.reservations
    ctx.cache.replace_pods([], listed_at=ctx.cache.clock() + 1)
    assert ctx.cache.reservations == {} and free(ctx, "b") == [1000] * 8


def test_topology_warning_is_counted() -> None:
    ctx = make_ctx([o.node("n", topology="{broken")])
    assert ctx.metrics.topology_invalid_total._value.get() == 1
    assert len(ctx.cache.nodes["n"].spec.gpus) == 8


async def test_reflector_lists_pages_watches_bookmarks_and_relists_on_410() -> None:
    ctx = make_ctx([])
    pods = [o.pod(f"p{i}", gpus=1, node_name="n", annotations=record("n", (i,))) for i in range(5)]
    nodes_src = FakeSource({"nodes": [o.node("n")]}, [])
    ws = WatchSettings(page_size=50, backoff_initial_seconds=0.01)
    later = o.pod("later", gpus=1, node_name="n", annotations=record("n", (7,)))
    later["metadata"]["resourceVersion"] = "105"
    deleted = {**pods[0], "metadata": {**pods[0]["metadata"], "resourceVersion": "111"}}
    streams = [
        [
            {"type": "ADDED", "object": later},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "110"}}},
            {"type": "DELETED", "object": deleted},
        ],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}],
        [{"raise": 1}],
        [{"raise": 410}],
    ]
    src = FakeSource({"pods": [*pods]}, streams)
    c = ctx.cache
    r_nodes = Reflector(
        "nodes", nodes_src, on_list=lambda i, t: c.replace_nodes(i), on_event=c.apply_node, settings=ws
    )
    restarts: list[str] = []
    r_pods = Reflector(
        "pods",
        src,
        on_list=lambda i, t: c.replace_pods(i, listed_at=t),
        on_event=c.apply_pod,
        settings=ws,
        on_restart=restarts.append,
    )
    await r_nodes.relist()
    await r_pods.relist()
    assert not c.ready  # DRA mode (on by default) also waits for the ResourceSlice and ResourceClaim lists
    c.replace_slices([])
    c.replace_claims([])
    assert c.ready and free(ctx, "n") == [0] * 5 + [1000] * 3
    await r_pods.watch_once()
    assert r_pods.resource_version == "111" and src.watches == ["100"]
    assert free(ctx, "n") == [1000] + [0] * 4 + [1000, 1000, 0]
    with pytest.raises(GoneError):
        await r_pods.watch_once()
    task = asyncio.create_task(r_pods.run())  # 410 from the last script; then relist, then idle
    r_pods.resource_version = "110"

    async def relisted_and_idle() -> bool:
        return r_pods.lists >= 2 and not src.streams

    await wait_until(relisted_and_idle, within=120, interval=0.01, what="the relist after 410 Gone")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert restarts == ["error", "gone"]
    assert r_pods.lists == 2  # one relist: the ERROR stream was consumed by watch_once above
    assert free(ctx, "n") == [0] * 5 + [1000] * 3  # the relist is the truth: "later" is not in it
    assert c.state.check_invariants() == []


def test_status_only_updates_are_cheap() -> None:
    ctx = make_ctx([o.node("n")])
    p = o.pod("p", gpus=1, node_name="n", phase="Running")
    ctx.cache.apply_pod("ADDED", p)
    version = ctx.cache.state.version
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    ctx.cache.apply_pod("MODIFIED", p)
    assert ctx.cache.state.version == version


def test_json_round_trip_of_recorded_events_is_what_the_source_yields() -> None:
    line = json.dumps({"type": "ADDED", "object": o.node("x")})
    assert json.loads(line)["object"]["metadata"]["name"] == "x"
    assert SchedulerSettings().watch.timeout_seconds == 300


def test_a_guessed_pod_keeps_its_gpus_when_its_requests_are_read_again() -> None:
    """A foreign pod's requests fingerprint changes when the kubelet first reports its containers'
    resources (every pod that starts, not only a resize). The old code re-guessed it while it still held
    its GPUs: on a full node the emptiest-GPU guess landed on the exact pod's GPUs 0-3 and left 4-7
    free in the model for the next pod, an oversubscription that was never there."""
    ctx = make_ctx([o.node("n")])
    c = ctx.cache
    c.apply_pod("ADDED", o.pod("mine", gpus=4, node_name="n", annotations=record("n", (0, 1, 2, 3))))
    theirs = o.pod("theirs", gpus=4, node_name="n", phase="Running")
    c.apply_pod("ADDED", theirs)
    uid = theirs["metadata"]["uid"]
    before = c.state.allocations[uid]
    assert before.gpus == (4, 5, 6, 7) and free(ctx, "n") == [0] * 8
    theirs["status"]["containerStatuses"] = [
        {"name": "main", "resources": {"requests": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "4"}}}
    ]
    c.apply_pod("MODIFIED", theirs)  # actuated cpu 2 > spec 1: the requests changed too
    after = c.state.allocations[uid]
    assert after.gpus == before.gpus and after.cpu_milli == 2000
    assert free(ctx, "n") == [0] * 8
    assert c.state.check_invariants() == []
    assert ctx.metrics.oversubscribed_total._value.get() == 0


def test_a_bound_pod_with_an_unreadable_annotation_still_holds_its_gpus() -> None:
    """Another scheduler bound a pod whose gpuplace annotation gpuplace cannot read: the kubelet still
    hands it its 8 GPUs. The old code counted nothing for it, so filter offered the full node."""
    ctx = make_ctx([o.node("n")])
    ctx.cache.apply_pod(
        "ADDED",
        o.pod(
            "theirs", gpus=8, node_name="n", phase="Running", annotations={"gpuplace.io/gpu-milli": "half"}
        ),
    )
    assert free(ctx, "n") == [0] * 8
