"""`bind_intent: false`: no `gpuplace.io/binding` write before a Binding; a process that takes over waits
the Bindings a predecessor may have sent out instead of holding their GPUs (scheduler/inflight.py).

Same stage as tests/scheduler/test_inherited_binds.py: MemoryBinder plays kube-apiserver for a
predecessor that dies with a Binding on its way and for the successor, which runs the service's own
wiring behind its HTTP app, on a fake clock so the window passes when the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpuplace.localcluster.waiting import wait_until
from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.http import make_extender_app
from scheduler.service import attach_background
from scheduler.settings import SchedulerSettings
from scheduler.verbs.bind import bind
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx
from tests.scheduler.test_bind_outcomes import Clock, bind_args, filtered, no_gpu_twice, stored
from tests.scheduler.test_inherited_binds import Client, bind_body, post

NODES = [o.node("h0")]
SETTINGS: dict[str, Any] = {
    "bind_intent": False,
    "bind_timeout_seconds": 0.05,  # the predecessor's client gives up on the held Binding at once
    "apiserver_request_timeout_seconds": 60,
    "apiserver_deadline_margin_seconds": 10,
}
WINDOW = 0.05 + 10  # min(?timeout=, --request-timeout) + margin, counted from the take-over at 1000.0


async def predecessor_sends_a_binding_and_dies() -> tuple[MemoryBinder, Any, Any]:
    """p's Binding (all 8 GPUs of h0) is on its way when its sender dies; no intent was written."""
    old = make_ctx(NODES, **SETTINGS)
    api = binder_of(old)
    p, q = api.add(o.pod("p", gpus=8)), api.add(o.pod("q", gpus=8))
    assert filtered(old, p, ["h0"]) == ["h0"]
    api.hold_bindings = True
    assert "is unknown" in (await bind(bind_args(p, "h0"), old)).error
    api.hold_bindings = False
    api.on_change = None
    assert "annotate" not in [kind for kind, _, _ in api.calls]  # the Binding only: no intent before it
    assert "gpuplace.io/binding" not in (stored(api, p)["metadata"].get("annotations") or {})
    return api, p, q


async def successor(aiohttp_client: Any, api: MemoryBinder, clock: Clock) -> tuple[ExtenderContext, Client]:
    """A new process on the same API server; returns once its HTTP app is up (ready or not)."""
    ctx = ExtenderContext.build(SchedulerSettings(**SETTINGS), api)
    ctx.cache.clock = clock
    api.on_change = ctx.cache.apply_pod
    ctx.cache.replace_nodes(NODES)
    ctx.cache.replace_pods([dict(p) for p in api.pods.values()], listed_at=clock())
    app = make_extender_app(ctx)
    attach_background(app, None)
    return ctx, await aiohttp_client(app)


async def readyz(client: Client) -> tuple[int, str]:
    resp = await client.get("/readyz")
    return resp.status, await resp.text()


async def until_waiting_out(ctx: ExtenderContext, client: Client) -> None:
    async def taking_over() -> bool:  # warm-up done, the pending list read: the wait has begun
        return ctx.synced and ("list", "", "") in binder_of(ctx).calls

    await wait_until(taking_over, within=120, interval=0.02, what="the successor to start its take-over")
    status, text = await readyz(client)
    assert status == 503 and "binds a previous process may have in flight" in text, text


async def test_the_successor_answers_no_verb_until_the_binding_committed_and_was_seen(
    aiohttp_client: Any,
) -> None:
    """Inside the window no verb is answered (p's Binding may still commit); the Binding commits; once
    the window is over the successor answers from a model that has p on h0, so q is refused."""
    api, p, q = await predecessor_sends_a_binding_and_dies()
    clock = Clock()
    ctx, client = await successor(aiohttp_client, api, clock)
    await until_waiting_out(ctx, client)
    r = await post(client, "filter", o.extender_args(q, names=["h0"]))
    assert "not ready" in r["Error"] and not r["NodeNames"], r
    assert "not ready" in (await post(client, "bind", bind_body(q, "h0")))["Error"]
    assert api.commit_late() == [None]  # kube-apiserver finishes the dead process's request
    clock.now = 1000.0 + WINDOW + 0.01

    async def ready() -> bool:
        return (await readyz(client))[0] == 200

    await wait_until(ready, within=60, interval=0.02, what="the successor to be ready after the window")
    assert ctx.cache.bound_node(p["metadata"]["uid"]) == "h0"
    r = await post(client, "filter", o.extender_args(q, names=["h0"]))
    assert not r["NodeNames"] and "h0" in r["FailedNodes"], r
    assert "cannot bind" in (await post(client, "bind", bind_body(q, "h0")))["Error"]
    no_gpu_twice(api)
    assert ctx.cache.state.check_invariants() == []


async def test_a_binding_that_never_commits_costs_only_the_window(aiohttp_client: Any) -> None:
    """kube-apiserver dropped the old Binding: after the window q gets h0's GPUs, written without an
    intent, and nothing is held for p."""
    api, p, q = await predecessor_sends_a_binding_and_dies()
    api.late.clear()
    clock = Clock()
    ctx, client = await successor(aiohttp_client, api, clock)
    await until_waiting_out(ctx, client)
    clock.now = 1000.0 + WINDOW - 1
    assert (await readyz(client))[0] == 503
    clock.now = 1000.0 + WINDOW + 0.01

    async def ready() -> bool:
        return (await readyz(client))[0] == 200

    await wait_until(ready, within=60, interval=0.02, what="the successor to be ready after the window")
    assert ctx.cache.outcome_unknown(p["metadata"]["uid"]) is None
    assert (await post(client, "filter", o.extender_args(q, names=["h0"])))["NodeNames"] == ["h0"]
    assert (await post(client, "bind", bind_body(q, "h0")))["Error"] == ""
    assert "gpuplace.io/binding" not in (stored(api, q)["metadata"].get("annotations") or {})
    no_gpu_twice(api)


@pytest.mark.parametrize("pending", ["none", "cpu-only", "being-deleted"])
async def test_no_unbound_gpu_pod_at_take_over_means_no_wait(aiohttp_client: Any, pending: str) -> None:
    """A Binding can only commit for a pod unbound at take-over: with none that asks for GPUs the
    successor is ready at once (the fake clock never moves here, so any wait would never end)."""
    api = MemoryBinder()
    if pending == "cpu-only":
        api.add(o.pod("c", gpus=0))
    elif pending == "being-deleted":
        d = o.pod("d", gpus=8)
        d["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        api.add(d)
    ctx, client = await successor(aiohttp_client, api, Clock())

    async def ready() -> bool:
        return (await readyz(client))[0] == 200

    await wait_until(ready, within=120, interval=0.02, what="the successor to be ready")
    assert ctx.inherited


async def test_after_the_window_it_reads_what_committed_without_waiting_for_the_watch(
    aiohttp_client: Any,
) -> None:
    """The Binding committed inside the window but the watch has not delivered it yet: p left the
    unbound list, so the successor reads p (bound to h0) into its model before it answers, and q is
    refused although the watch never showed p bound."""
    api, p, q = await predecessor_sends_a_binding_and_dies()
    clock = Clock()
    ctx, client = await successor(aiohttp_client, api, clock)
    await until_waiting_out(ctx, client)
    api.on_change = None  # the watch lags behind etcd: it shows nothing from here on
    assert api.commit_late() == [None]
    clock.now = 1000.0 + WINDOW + 0.01

    async def ready() -> bool:
        return (await readyz(client))[0] == 200

    await wait_until(ready, within=60, interval=0.02, what="the successor to be ready after the window")
    assert ("get", "default", "p") in api.calls
    assert ctx.cache.bound_node(p["metadata"]["uid"]) == "h0"
    assert not (await post(client, "filter", o.extender_args(q, names=["h0"])))["NodeNames"]
    assert "cannot bind" in (await post(client, "bind", bind_body(q, "h0")))["Error"]
    no_gpu_twice(api)
