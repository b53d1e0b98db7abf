"""The aiohttp adapter: decode → verb → encode, plus /healthz, /readyz and /metrics.

Error mapping (the extender contract, STYLE.md §7):
- malformed JSON, wrong types, missing fields → 400 with a message (counted per verb);
- a body over `max_body_bytes` → 413 (aiohttp's client_max_size);
- filter/bind failures the protocol expects in-band → 200 with `Error`;
- an exception inside filter → 200 with `Error` (the pod fails this cycle, visibly, and is retried);
  inside prioritize/preempt → 500, logged (kube-scheduler ignores prioritize errors; preempt has no
  Error field). The process keeps serving in every case.
The filter/prioritize fast path recognises a repeated NodeNames list from its raw bytes
(scheduler.namelists) and validates only the Pod part, once per distinct Pod JSON (`ctx.bodies`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from scheduler.context import ExtenderContext
from scheduler.leader import Role, Standalone
from scheduler.namelists import NameList
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import FilterOutcome, filter_nodes
from scheduler.verbs.preempt import preempt
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import (
    ExtenderArgs,
    ExtenderBindingArgs,
    ExtenderBindingResult,
    ExtenderPreemptionArgs,
    dump,
)

log = logging.getLogger("gpuplace.scheduler.http")
CTX: web.AppKey[ExtenderContext] = web.AppKey("extender", ExtenderContext)
ROLE: web.AppKey[Role] = web.AppKey("extender_role")
JSON = "application/json"


class BadRequestError(Exception):
    pass


def _decode(body: bytes, model: type[BaseModel]) -> Any:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:5]
        )
        raise BadRequestError(f"invalid {model.__name__}: {problems}") from None


def _args_and_names(body: bytes, ctx: ExtenderContext) -> tuple[ExtenderArgs, NameList | None]:
    """ExtenderArgs, with NodeNames resolved from the byte cache when the list was seen before."""
    split = ctx.names.split(body)
    if split is not None:
        tail, pod_body = split
        names = ctx.names.lookup_tail(tail)
        if names is not None:  # filter and prioritize of a pod send the same Pod: validated once
            args = ctx.bodies.get(pod_body)
            if args is None:
                args = _decode(pod_body, ExtenderArgs)
                ctx.bodies.put(pod_body, args)
            return args, names
    args = _decode(body, ExtenderArgs)
    if args.node_names is not None:
        return args, ctx.names.for_names(args.node_names, split[0] if split else None)
    return args, None


def _not_ready(verb: str, ctx: ExtenderContext) -> web.Response:
    """Answer a verb that arrived before the cache is synced and the kernels are warm.

    A standalone replica (no leader election) opens its port before its lists are in, and
    kube-scheduler retries pending pods at once: an answer from a half-listed cache would place pods on
    GPUs that bound pods hold. Filter and bind get their in-band `Error`, which kube-scheduler shows on
    the pod and retries after backoff (pkg/scheduler/extender.go, `HTTPExtender.Filter` / `Bind`);
    prioritize and preempt get a 503, which kube-scheduler ignores (prioritize: "no score given by this
    extender", pkg/scheduler/schedule_one.go `prioritizeNodes`) or treats as a failed preemption attempt.
    A replica campaigns only once synced and warm (scheduler.leader.campaign), so a new leader gets here
    only while it holds the binds its predecessor may have in flight (scheduler.inflight)."""
    ctx.metrics.errors.labels(verb).inc()
    message = (
        f"gpuplace is not ready: waiting for {', '.join(ctx.waiting())} (state is rebuilt before it answers)"
    )
    if verb == "filter":
        return _json(FilterOutcome(error=message).encode())
    if verb == "bind":
        return _json(orjson.dumps(dump(ExtenderBindingResult(error=message))))
    return web.Response(status=503, text=message)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def _timed(
    verb: str, fn: Callable[[web.Request, ExtenderContext], Awaitable[web.Response]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        if not request.app[ROLE].is_leader():
            return _refuse(request, verb)
        if not ctx.ready:
            return _not_ready(verb, ctx)
        t0 = time.perf_counter()
        try:
            return await fn(request, ctx)
        except BadRequestError as e:
            ctx.metrics.bad_requests.labels(verb).inc()
            return web.Response(status=400, text=str(e))
        finally:
            ctx.metrics.verb_latency[verb].observe(time.perf_counter() - t0)

    return handler


def _refuse(request: web.Request, verb: str) -> web.Response:
    """A follower (or a leader whose lease ran out) never answers a verb: it closes the connection with no
    response, so kube-scheduler's HTTP client gets an error for this call and reconnects, through the
    Service, to the leader; it never acts on an answer from a replica that may no longer hold the GPUs'
    bookkeeping (scheduler/leader.py). The 503 below is never delivered (the transport is closed)."""
    request.app[ROLE].refused(verb)
    if request.transport is not None:
        request.transport.close()
    return web.Response(
        status=503, text=f"not the leader: {request.app[ROLE].describe()}", headers={"Connection": "close"}
    )


async def _filter(request: web.Request, ctx: ExtenderContext) -> web.Response:
    args, names = _args_and_names(await request.read(), ctx)
    try:
        outcome = filter_nodes(args, ctx, names=names)
    except Exception as e:
        log.exception("filter failed")
        ctx.metrics.errors.labels("filter").inc()
        outcome = FilterOutcome(error=f"gpuplace: internal error in filter: {e!r}")
    return _json(outcome.encode())


async def _prioritize(request: web.Request, ctx: ExtenderContext) -> web.Response:
    args, names = _args_and_names(await request.read(), ctx)
    try:
        return _json(prioritize(args, ctx, names=names).encode())
    except Exception:
        log.exception("prioritize failed")
        ctx.metrics.errors.labels("prioritize").inc()
        return web.Response(status=500, text="prioritize failed; see gpuplace logs")


async def _bind(request: web.Request, ctx: ExtenderContext) -> web.Response:
    args = _decode(await request.read(), ExtenderBindingArgs)
    result = await bind(args, ctx)
    if result.error:
        ctx.metrics.errors.labels("bind").inc()
    return _json(orjson.dumps(dump(result)))


async def _preempt(request: web.Request, ctx: ExtenderContext) -> web.Response:
    args = _decode(await request.read(), ExtenderPreemptionArgs)
    try:
        return _json(orjson.dumps(dump(preempt(args, ctx))))
    except Exception:
        log.exception("preempt failed")
        ctx.metrics.errors.labels("preempt").inc()
        return web.Response(status=500, text="preempt failed; see gpuplace logs")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    role = request.app[ROLE]
    what = ctx.waiting(leading=role.is_leader())
    waiting = f"waiting for {', '.join(what)}" if what else "cache synced, kernels warm"
    if not role.is_leader():
        return web.Response(status=503, text=f"not ready: {role.describe()}; {waiting}")
    if ctx.ready:
        return web.Response(text="ready")
    return web.Response(status=503, text=f"not ready: {waiting}")


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.metrics.refresh(ctx.cache)
    if ctx.gangs is not None:
        ctx.metrics.refresh_gangs(*ctx.gangs.counts())
    return web.Response(
        body=generate_latest(ctx.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _debug_gangs(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if ctx.gangs is None:
        return web.Response(status=404, text="gang scheduling is off (scheduler.gang.enabled)")
    return _json(orjson.dumps(ctx.gangs.snapshot()))


def make_extender_app(ctx: ExtenderContext, role: Role | None = None) -> web.Application:
    """The extender's aiohttp application (verbs under the url prefix, ops endpoints at the root).

    `role` says whether this replica may answer the verbs (scheduler/leader.py); default: always."""
    app = web.Application(client_max_size=ctx.settings.max_body_bytes)
    app[CTX] = ctx
    app[ROLE] = role or Standalone()
    p = ctx.settings.url_prefix
    app.router.add_post(f"{p}/filter", _timed("filter", _filter))
    app.router.add_post(f"{p}/prioritize", _timed("prioritize", _prioritize))
    app.router.add_post(f"{p}/bind", _timed("bind", _bind))
    app.router.add_post(f"{p}/preempt", _timed("preempt", _preempt))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/debug/gangs", _debug_gangs)
    return app
