"""A Binding sent by a process that then died (SIGKILL, OOM, a leader replaced) can still commit at
kube-apiserver until that request's deadline; the next process must hold its GPUs meanwhile.

MemoryBinder plays kube-apiserver, shared by two extender contexts: the predecessor sends a Binding
that the server keeps working on (`hold_bindings`) and is then forgotten (its memory is gone), the
successor lists the same server and serves; `commit_late` then commits the old Binding, as
kube-apiserver does up to the request's deadline. The successor runs the service's own wiring
(scheduler.service.attach_background: warm-up, the hold, the sweeper) behind its HTTP app.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gpuplace.localcluster.waiting import wait_until
from scheduler.binder import ApiError, MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.http import make_extender_app
from scheduler.service import attach_background
from scheduler.settings import SchedulerSettings
from scheduler.verbs.bind import bind, sweep
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx
from tests.scheduler.test_bind_outcomes import Clock, bind_args, filtered, no_gpu_twice, stored, writes

Client = TestClient  # type: ignore[type-arg]
NODES = [o.node("h0")]
SETTINGS: dict[str, Any] = {
    "bind_timeout_seconds": 0.05,  # the predecessor's client gives up on the held Binding at once
    "apiserver_request_timeout_seconds": 60,
    "apiserver_deadline_margin_seconds": 10,
}


async def predecessor_sends_a_binding_and_dies() -> tuple[MemoryBinder, Any, Any]:
    """p's Binding (all 8 GPUs of h0) is on its way at kube-apiserver when its sender dies; q waits."""
    old = make_ctx(NODES, **SETTINGS)
    api = binder_of(old)
    p, q = api.add(o.pod("p", gpus=8)), api.add(o.pod("q", gpus=8))
    assert filtered(old, p, ["h0"]) == ["h0"]
    api.hold_bindings = True
    assert "is unknown" in (await bind(bind_args(p, "h0"), old)).error
    api.hold_bindings = False
    api.on_change = None  # the predecessor is gone, and everything it held in memory with it
    return api, p, q


async def successor(
    aiohttp_client: Any, api: MemoryBinder, clock: Clock | None = None
) -> tuple[ExtenderContext, Client]:
    """A new process on the same API server: lists nodes and pods, then serves once ready."""
    ctx = ExtenderContext.build(SchedulerSettings(**SETTINGS), api)
    if clock is not None:
        ctx.cache.clock = clock
    api.on_change = ctx.cache.apply_pod
    ctx.cache.replace_nodes(NODES)
    ctx.cache.replace_pods([dict(p) for p in api.pods.values()], listed_at=ctx.cache.clock())
    app = make_extender_app(ctx)
    attach_background(app, None)
    client = await aiohttp_client(app)

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, within=120, interval=0.02, what="the successor to be ready")
    return ctx, client


async def post(client: Client, verb: str, payload: Any) -> Any:
    resp = await client.post(f"/scheduler/{verb}", data=io.BytesIO(orjson.dumps(payload)))
    assert resp.status == 200
    return await resp.json()


def bind_body(p: dict[str, Any], node: str) -> dict[str, str]:
    m = p["metadata"]
    return {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}


async def test_a_new_process_holds_the_gpus_a_dead_predecessors_binding_may_still_claim(
    aiohttp_client: Any,
) -> None:
    """The old code rebuilt its state from the pods it listed: p unbound, h0 free. It gave all 8 GPUs
    to q, and p's Binding, committed afterwards, put both pods on the same GPUs."""
    api, p, q = await predecessor_sends_a_binding_and_dies()
    assert len(api.late) == 1
    ctx, client = await successor(aiohttp_client, api)
    r = await post(client, "filter", o.extender_args(q, names=["h0"]))
    assert not r["NodeNames"], r  # p's GPUs are held while its Binding may commit
    assert "cannot bind" in (await post(client, "bind", bind_body(q, "h0")))["Error"]
    assert not stored(api, q)["spec"].get("nodeName")
    assert api.commit_late() == [None]  # kube-apiserver finishes the dead process's request
    no_gpu_twice(api)
    assert stored(api, p)["spec"]["nodeName"] == "h0"
    assert ctx.cache.reservations == {} and ctx.cache.pods[p["metadata"]["uid"]].exact  # the watch settled it
    assert ctx.metrics.oversubscribed_total._value.get() == 0
    assert ctx.cache.state.check_invariants() == []


async def test_kube_schedulers_retry_of_that_pod_writes_the_same_binding(aiohttp_client: Any) -> None:
    """kube-scheduler retries p (the dead process never answered): the successor writes the Binding
    again on the GPUs the first one names, so whichever commits, p holds exactly those."""
    api, p, _ = await predecessor_sends_a_binding_and_dies()
    first = orjson.loads(api.late[0][4]["gpuplace.io/gpus"])
    ctx, client = await successor(aiohttp_client, api)
    assert ctx.cache.outcome_unknown(p["metadata"]["uid"]) is not None  # held for p, not free
    r = await post(client, "filter", o.extender_args(p, names=["h0"]))
    assert r["NodeNames"] == ["h0"], r
    assert (await post(client, "bind", bind_body(p, "h0")))["Error"] == ""
    assert (
        orjson.loads(stored(api, p)["metadata"]["annotations"]["gpuplace.io/gpus"])["gpus"] == first["gpus"]
    )
    assert [None if e is None else e.status for e in api.commit_late()] == [409]  # already bound: refused
    no_gpu_twice(api)
    assert ctx.cache.state.check_invariants() == []


async def test_the_hold_ends_at_the_deadline_so_no_pod_waits_for_it_for_good(aiohttp_client: Any) -> None:
    """The old Binding never commits (kube-apiserver dropped it): once its deadline has surely passed
    (measured from when the successor took over, which is after the old one was sent), the sweeper
    reads p unbound and frees the GPUs; q then gets them."""
    api, p, q = await predecessor_sends_a_binding_and_dies()
    api.late.clear()
    clock = Clock()
    ctx, client = await successor(aiohttp_client, api, clock)
    held = ctx.cache.outcome_unknown(p["metadata"]["uid"])
    assert held is not None
    # the predecessor's Binding carried ?timeout=0.05s: the server's deadline for it + the margin
    assert held.hold_until == pytest.approx(1000.0 + 0.05 + 10)
    clock.now = 1005.0
    assert await sweep(ctx) == 0 and filtered(ctx, q, ["h0"]) == []
    clock.now = 1011.0
    assert await sweep(ctx) == 1
    assert filtered(ctx, q, ["h0"]) == ["h0"]
    assert (await post(client, "bind", bind_body(q, "h0")))["Error"] == ""
    no_gpu_twice(api)


async def test_the_intent_is_written_before_the_binding_and_only_on_the_same_pod() -> None:
    """The evidence the successor reads: an annotation on the pod, written (with the pod's UID as a
    precondition) before the Binding is sent. A pod re-created under the same name refuses it, and no
    Binding is sent at all."""
    ctx = make_ctx(NODES, **SETTINGS)
    api = binder_of(ctx)
    p = api.add(o.pod("p", gpus=2))
    filtered(ctx, p, ["h0"])
    assert (await bind(bind_args(p, "h0"), ctx)).error == ""
    assert [kind for kind, _, _ in api.calls] == ["annotate", "bind"]
    intent = orjson.loads(stored(api, p)["metadata"]["annotations"]["gpuplace.io/binding"])
    record = orjson.loads(stored(api, p)["metadata"]["annotations"]["gpuplace.io/gpus"])
    assert intent["record"] == record and intent["timeout_seconds"] == 0.05
    assert intent["holder"] and intent["sent"].endswith("Z")

    r = api.add(o.pod("r", gpus=2))
    filtered(ctx, r, ["h0"])
    stale = bind_args(r, "h0")
    api.delete("default", "r")
    api.add(o.pod("r", gpus=2))  # re-created: another UID
    with pytest.raises(ApiError) as refused:
        await api.annotate_pod("default", "r", uid=stale.pod_uid, annotations={"a": "b"})
    assert refused.value.status == 422
    result = await bind(stale, ctx)
    assert "cannot bind" in result.error and writes(api) == 1  # no Binding sent for the stale pod
    assert stale.pod_uid not in ctx.cache.state.allocations
