"""Bind when the API server's answer is lost: the write may have committed, or may commit later.

MemoryBinder plays kube-apiserver: `lose_answer` commits a Binding and loses its answer (with
`fail_after_commit` failing the read after it), `hold_bindings` keeps a Binding uncommitted until the
client gave up and `commit_late` commits it afterwards, as kube-apiserver does until the request's
deadline. The cache's clock is a fake one, so deadlines pass without waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from kubernetes_asyncio import client

from placement_core import Placement
from scheduler.binder import ApiError, MemoryBinder, NotSentError
from scheduler.cache import ReservationState
from scheduler.context import ExtenderContext
from scheduler.kubeapi import KubeBinder
from scheduler.verbs.bind import bind, hold_seconds, sweep
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx

LOST = ApiError(0, "connection reset by peer")
TIMEOUT_504 = ApiError(504, "Timeout: request did not complete within the allotted timeout")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ctx() -> ExtenderContext:
    """h0, h1: 8-GPU HGX H100; a short bind timeout (the held Binding's client gives up quickly), the
    default 60 s API server deadline + 10 s margin, a 1 s reservation TTL, and a fake clock."""
    c = make_ctx(
        [o.node("h0"), o.node("h1")],
        bind_timeout_seconds=0.05,
        apiserver_request_timeout_seconds=60,
        apiserver_deadline_margin_seconds=10,
        reservation_ttl_seconds=1,
    )
    c.cache.clock = Clock()
    return c


def clock(ctx: ExtenderContext) -> Clock:
    assert isinstance(ctx.cache.clock, Clock)
    return ctx.cache.clock


def bind_args(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}
    )


def filtered(ctx: ExtenderContext, p: dict[str, Any], names: list[str]) -> list[str]:
    r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=names)), ctx).to_wire()
    return r.node_names or []


def writes(b: MemoryBinder) -> int:
    return sum(kind == "bind" for kind, _, _ in b.calls)


def stored(b: MemoryBinder, p: dict[str, Any]) -> dict[str, Any]:
    return b.pods[(p["metadata"]["namespace"], p["metadata"]["name"])]


def no_gpu_twice(b: MemoryBinder) -> None:
    """What the API server holds: no GPU in two bound pods' records (the audit's double-booking check)."""
    seen: set[tuple[str, int]] = set()
    for pod in b.pods.values():
        rec = (pod["metadata"].get("annotations") or {}).get("gpuplace.io/gpus")
        if pod["spec"].get("nodeName") and rec:
            gpus = {(pod["spec"]["nodeName"], g) for g in orjson.loads(rec)["gpus"]}
            assert not gpus & seen, f"{pod['metadata']['name']} shares GPUs {sorted(gpus & seen)}"
            seen |= gpus


async def test_a_retry_after_an_unknown_outcome_writes_the_binding_again(ctx: ExtenderContext) -> None:
    """Item 1: the write did not land, its answer and the read after it failed. The old code called
    the pod bound and answered kube-scheduler's retry 'idempotent' without a Binding: Pending for good."""
    b = binder_of(ctx)
    p = b.add(o.pod("p", gpus=2))
    uid = p["metadata"]["uid"]
    assert "h1" in filtered(ctx, p, ["h1"])
    b.fail = {"bind": LOST, "get": ApiError(503, "etcd leader changed")}
    first = await bind(bind_args(p, "h1"), ctx)
    assert "is unknown; its GPUs there stay held" in first.error
    assert ctx.cache.bound_node(uid) is None  # never taken for bound
    held = ctx.cache.reservations[uid]
    assert held.state == ReservationState.UNKNOWN and uid in ctx.cache.state.allocations
    b.fail = {}
    assert (await bind(bind_args(p, "h1"), ctx)).error == ""  # kube-scheduler's retry
    assert writes(b) == 2, "the retry must write the Binding again"
    pod = stored(b, p)
    assert pod["spec"]["nodeName"] == "h1"
    assert orjson.loads(pod["metadata"]["annotations"]["gpuplace.io/gpus"])["gpus"] == list(
        held.placement.gpus
    )
    assert ctx.cache.reservations == {} and ctx.cache.pods[uid].exact  # the watch confirmed it
    assert ctx.metrics.binds.labels("unknown")._value.get() == 1
    assert ctx.metrics.binds.labels("ok")._value.get() == 1


async def test_a_retry_after_a_lost_answer_whose_write_landed_is_recognised_by_the_409(
    ctx: ExtenderContext,
) -> None:
    """The write committed, its answer (504) and the read after it were lost, the watch lags: the
    retry writes again, gets 409, and the ownership check finds our own record there."""
    b = binder_of(ctx)
    b.on_change = None  # the watch has not delivered the update yet
    p = b.add(o.pod("p", gpus=4))
    uid = p["metadata"]["uid"]
    filtered(ctx, p, ["h1"])
    b.lose_answer, b.fail_after_commit = TIMEOUT_504, {"get": LOST}
    assert "is unknown" in (await bind(bind_args(p, "h1"), ctx)).error
    assert stored(b, p)["spec"]["nodeName"] == "h1"  # it did land
    b.lose_answer, b.fail = None, {}
    assert (await bind(bind_args(p, "h1"), ctx)).error == ""
    assert writes(b) == 2 and ctx.cache.reservations[uid].state == ReservationState.WRITTEN
    ctx.cache.apply_pod("MODIFIED", stored(b, p))  # the watch catches up
    assert ctx.cache.reservations == {} and ctx.cache.pods[uid].exact
    assert ctx.cache.state.check_invariants() == []


async def test_a_read_showing_the_pod_unbound_after_a_timeout_does_not_free_the_gpus(
    ctx: ExtenderContext,
) -> None:
    """Item 2: our client gives up, the read right after shows the pod unbound, and kube-apiserver
    commits the Binding later. The old code rolled back on that read and gave the GPUs to q: two pods
    recorded on the same GPUs."""
    b = binder_of(ctx)
    p, q = b.add(o.pod("p", gpus=8)), b.add(o.pod("q", gpus=8))
    uid = p["metadata"]["uid"]
    assert filtered(ctx, p, ["h1"]) == ["h1"]
    b.hold_bindings = True
    r = await bind(bind_args(p, "h1"), ctx)
    assert uid in ctx.cache.state.allocations and len(b.late) == 1  # kept: the read proved nothing
    assert "TimeoutError; pod is not bound" in r.error
    assert ctx.cache.reservations[uid].state == ReservationState.UNKNOWN
    b.hold_bindings = False
    # no other pod gets those GPUs while the outcome is unknown
    assert filtered(ctx, q, ["h1"]) == []
    assert "no longer fits" in (await bind(bind_args(q, "h1"), ctx)).error
    assert b.commit_late() == [None]  # kube-apiserver finishes the request after the client left
    assert stored(b, p)["spec"]["nodeName"] == "h1" and not stored(b, q)["spec"].get("nodeName")
    no_gpu_twice(b)
    assert ctx.cache.reservations == {} and ctx.cache.pods[uid].exact  # the watch settled it
    assert ctx.metrics.oversubscribed_total._value.get() == 0
    assert ctx.cache.state.check_invariants() == []


async def test_unknown_gpus_are_rolled_back_only_after_the_deadline_and_a_confirming_read(
    ctx: ExtenderContext,
) -> None:
    """The sweeper keeps an unknown reservation past the (1 s) TTL until the API server's deadline for
    its write has passed (sent + min(bind timeout, 60 s) + 10 s), then rolls back only after a read
    that succeeds. The old code marked it bound and rolled it back at the TTL."""
    b = binder_of(ctx)
    p = b.add(o.pod("p", gpus=8))
    uid = p["metadata"]["uid"]
    filtered(ctx, p, ["h1"])
    sent = clock(ctx).now
    b.fail = {"bind": ApiError(503, "etcd is sad"), "get": LOST}
    assert "is unknown" in (await bind(bind_args(p, "h1"), ctx)).error
    b.fail = {}
    clock(ctx).now = sent + 5  # past the TTL, not the deadline
    assert await sweep(ctx) == 0 and uid in ctx.cache.state.allocations
    assert ctx.cache.reservations[uid].hold_until == pytest.approx(sent + hold_seconds(ctx.settings))
    clock(ctx).now = sent + 10.1  # the deadline has passed
    b.fail = {"get": LOST}
    assert await sweep(ctx) == 0 and uid in ctx.cache.state.allocations  # no confirming read: kept
    b.fail = {}
    assert await sweep(ctx) == 1
    assert ctx.cache.reservations == {} and uid not in ctx.cache.state.allocations
    assert ctx.metrics.rollbacks.labels("outcome unknown, not bound by the deadline")._value.get() == 1


async def test_the_sweeper_confirms_an_unknown_write_that_landed(ctx: ExtenderContext) -> None:
    b = binder_of(ctx)
    b.on_change = None
    p = b.add(o.pod("p", gpus=2))
    uid = p["metadata"]["uid"]
    filtered(ctx, p, ["h0"])
    b.lose_answer, b.fail_after_commit = LOST, {"get": LOST}
    assert "is unknown" in (await bind(bind_args(p, "h0"), ctx)).error
    b.lose_answer, b.fail = None, {}
    clock(ctx).now += hold_seconds(ctx.settings) + 1
    assert await sweep(ctx) == 0
    assert ctx.cache.reservations == {} and ctx.cache.pods[uid].exact
    assert (await bind(bind_args(p, "h0"), ctx)).error == "" and writes(b) == 1  # now truly bound


async def test_the_watch_settles_an_unknown_outcome_at_any_time(ctx: ExtenderContext) -> None:
    """A late commit seen by the watch turns the reservation into the pod's record (a retry is then
    idempotent, no second write); a pod deleted meanwhile releases its GPUs at once (a deleted pod can
    never be bound)."""
    b = binder_of(ctx)
    p, d = b.add(o.pod("p", gpus=2)), b.add(o.pod("d", gpus=2))
    for pod in (p, d):
        filtered(ctx, pod, ["h1"])
    b.hold_bindings = True
    assert "is unknown" in (await bind(bind_args(p, "h1"), ctx)).error
    assert "is unknown" in (await bind(bind_args(d, "h1"), ctx)).error
    b.hold_bindings = False
    b.delete("default", "d")
    assert d["metadata"]["uid"] not in ctx.cache.state.allocations
    assert [None if e is None else e.status for e in b.commit_late()] == [None, 404]
    assert ctx.cache.reservations == {} and ctx.cache.pods[p["metadata"]["uid"]].exact
    assert (await bind(bind_args(p, "h1"), ctx)).error == "" and writes(b) == 2
    assert ctx.cache.state.check_invariants() == []


async def test_while_unknown_only_the_held_node_passes_filter_and_bind_elsewhere_is_refused(
    ctx: ExtenderContext,
) -> None:
    """The pod's own held GPUs must not push it elsewhere (nor make its own node look full): filter
    offers only the held node, so kube-scheduler's retry goes there and rewrites the Binding."""
    b = binder_of(ctx)
    p = b.add(o.pod("p", gpus=8))
    uid = p["metadata"]["uid"]
    assert filtered(ctx, p, ["h0", "h1"]) == ["h0", "h1"]
    b.fail = {"bind": LOST, "get": LOST}
    assert "is unknown" in (await bind(bind_args(p, "h1"), ctx)).error
    b.fail = {}
    r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=["h0", "h1"])), ctx).to_wire()
    assert r.node_names == ["h1"]
    assert "not known yet; its GPUs are held there" in r.failed_nodes["h0"]
    refused = await bind(bind_args(p, "h0"), ctx)
    assert "bind of this pod to h1 is unknown" in refused.error
    assert ctx.cache.reservations[uid].node == "h1" and writes(b) == 1
    assert (await bind(bind_args(p, "h1"), ctx)).error == "" and writes(b) == 2


async def test_a_refused_retry_keeps_the_gpus_while_an_earlier_write_may_land(ctx: ExtenderContext) -> None:
    """A definitive refusal (429) of the retry says nothing about the first write, still in flight."""
    b = binder_of(ctx)
    p, q = b.add(o.pod("p", gpus=8)), b.add(o.pod("q", gpus=8))
    filtered(ctx, p, ["h1"])
    b.hold_bindings = True
    assert "is unknown" in (await bind(bind_args(p, "h1"), ctx)).error
    uid = p["metadata"]["uid"]
    first_deadline = ctx.cache.reservations[uid].hold_until
    clock(ctx).now += 5
    b.hold_bindings, b.fail = False, {"bind": ApiError(429, "Too many requests")}
    assert "Too many requests" in (await bind(bind_args(p, "h1"), ctx)).error
    b.fail = {}
    assert uid in ctx.cache.state.allocations and filtered(ctx, q, ["h1"]) == []
    assert ctx.cache.reservations[uid].hold_until == first_deadline  # a refused write extends nothing
    assert b.commit_late() == [None]
    no_gpu_twice(b)
    assert ctx.cache.reservations == {} and ctx.cache.state.check_invariants() == []


async def test_a_lost_answer_rolls_back_at_once_when_the_pod_rules_the_write_out(
    ctx: ExtenderContext,
) -> None:
    """After a 5xx the read shows the pod being deleted, or bound elsewhere: kube-apiserver's Binding
    update refuses both, so nothing can land and the GPUs return at once. A pod already gone refuses
    the intent written before the Binding (404), so no Binding is sent at all."""
    b = binder_of(ctx)
    b.on_change = None
    gone, deleting, elsewhere = (b.add(o.pod(n, gpus=1)) for n in ("gone", "deleting", "elsewhere"))
    for pod in (gone, deleting, elsewhere):
        filtered(ctx, pod, ["h1"])
    b.fail = {"bind": ApiError(500, "internal error")}
    b.delete("default", "gone")
    stored(b, deleting)["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    stored(b, elsewhere)["spec"]["nodeName"] = "h0"
    assert "not found); no Binding was sent" in (await bind(bind_args(gone, "h1"), ctx)).error  # its intent
    assert "being deleted" in (await bind(bind_args(deleting, "h1"), ctx)).error
    assert "bound to h0 meanwhile" in (await bind(bind_args(elsewhere, "h1"), ctx)).error
    assert ctx.cache.reservations == {} and ctx.cache.state.allocations == {}


async def test_a_bind_cancelled_mid_write_keeps_the_gpus(ctx: ExtenderContext) -> None:
    """Cancelled while the Binding is on its way (shutdown, a dropped handler): outcome unknown."""
    b = binder_of(ctx)
    p = b.add(o.pod("p", gpus=8))
    uid = p["metadata"]["uid"]
    filtered(ctx, p, ["h1"])
    ctx.settings = ctx.settings.model_copy(update={"bind_timeout_seconds": 3600.0})
    b.hold_bindings = True
    task = asyncio.create_task(bind(bind_args(p, "h1"), ctx))
    await b.held.wait()
    task.cancel()
    result = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(result[0], asyncio.CancelledError)
    assert uid in ctx.cache.state.allocations and ctx.cache.outcome_unknown(uid) is not None


async def test_a_bind_cancelled_while_reading_after_a_lost_answer_keeps_the_gpus_for_the_sweeper(
    ctx: ExtenderContext,
) -> None:
    """Cancelled in the read after a lost answer: the reservation must not stay WRITING (which nothing
    ever settles) — it is UNKNOWN, and the sweeper settles it after the deadline."""
    b = binder_of(ctx)
    p = b.add(o.pod("p", gpus=8))
    uid = p["metadata"]["uid"]
    filtered(ctx, p, ["h1"])
    ctx.settings = ctx.settings.model_copy(update={"bind_timeout_seconds": 3600.0})
    reading = asyncio.Event()

    async def hanging_get(namespace: str, name: str) -> dict[str, Any] | None:
        reading.set()
        await asyncio.Event().wait()
        return None

    b.fail = {"bind": LOST}
    b.get_pod = hanging_get  # type: ignore[method-assign]
    task = asyncio.create_task(bind(bind_args(p, "h1"), ctx))
    await reading.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ctx.cache.outcome_unknown(uid) is not None and uid in ctx.cache.state.allocations
    del b.get_pod
    b.fail = {}
    clock(ctx).now += hold_seconds(ctx.settings) + 1
    assert await sweep(ctx) == 1 and uid not in ctx.cache.state.allocations


def test_relist_keeps_an_unknown_reservation_while_its_pod_exists(ctx: ExtenderContext) -> None:
    """A relist drops an unknown reservation only when its pod is gone (then nothing can land)."""
    cache = ctx.cache
    p = o.pod("p", gpus=1)
    uid = p["metadata"]["uid"]
    cache.reserve(uid, "default", "p", Placement(node="h1", gpus=(0,)))
    cache.unknown(uid, cache.clock() + 70)
    cache.replace_pods([p], listed_at=cache.clock() + 1)  # pending in the list: kept
    assert cache.outcome_unknown(uid) is not None
    cache.replace_pods([], listed_at=cache.clock() + 1)  # gone
    assert cache.reservations == {} and uid not in cache.state.allocations


async def test_kube_binder_tells_a_request_never_sent_from_an_answer_lost() -> None:
    """Only a failed connect is 'not sent' (safe to roll back); a connection that drops after the
    request went out is a lost answer. The Binding asks kube-apiserver for our deadline (?timeout=)."""
    seen: list[bytes] = []

    async def read_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(read_then_drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kw: dict[str, Any] = {"uid": "u", "node": "n", "annotations": {}}
    async with client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")) as api:
        with pytest.raises(ApiError) as lost:
            await KubeBinder(api, timeout=5).bind("ns", "p", **kw)
        assert not isinstance(lost.value, NotSentError) and lost.value.status == 0
        assert seen and seen[0].startswith(b"POST /api/v1/namespaces/ns/pods/p/binding?timeout=5000ms ")
        server.close()
        await server.wait_closed()
        with pytest.raises(NotSentError):  # nobody listens there now
            await KubeBinder(api, timeout=5).bind("ns", "p", **kw)
