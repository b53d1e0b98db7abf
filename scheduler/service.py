"""Wire the extender together: context, reflectors feeding the cache, the reservation sweeper, warm-up.

Why a separate module: `gpuplace serve` (the app layer) decides where the API client comes from and
which ports to open; everything that belongs to running the extender itself — which loops run, in
what order readiness is reached — is here, so tests can run the same wiring against a fake Source
and a MemoryBinder. Background work follows aiohttp's cleanup_ctx pattern: start on startup, cancel
and await on shutdown. Nothing waits for bind outcomes still unknown at shutdown: the next process
holds their GPUs from the intents on the pods (scheduler.inflight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from placement_core import placer
from scheduler.binder import ApiError
from scheduler.context import ExtenderContext
from scheduler.gang.podgroups import KINDS
from scheduler.http import CTX, ROLE
from scheduler.inflight import take_over
from scheduler.retry import until_it_works
from scheduler.verbs.bind import hold_seconds, sweep
from scheduler.watch import Reflector, Source

log = logging.getLogger("gpuplace.scheduler")


def reflectors(ctx: ExtenderContext, source: Source) -> list[Reflector]:
    """Nodes first, then pods: a pod's node is usually known when the pod is applied (either order
    is correct — pods on unknown nodes are counted when the node arrives). Then PDBs, for preempt,
    and in DRA mode ResourceSlices and ResourceClaims (any order: each event re-counts the nodes it
    touches; readiness waits for both lists)."""
    cache, ws, m = ctx.cache, ctx.settings.watch, ctx.metrics

    def restart(kind: str) -> Any:
        return lambda why: m.watch_restarts.labels(kind, why).inc()

    dra = []
    if cache.dra is not None:  # DRA mode: ResourceSlices and ResourceClaims, rebuilt like the rest
        dra = [
            Reflector(
                "resourceslices",
                source,
                on_list=lambda items, _t: cache.replace_slices(items),
                on_event=cache.apply_slice,
                settings=ws,
                on_restart=restart("resourceslices"),
            ),
            Reflector(
                "resourceclaims",
                source,
                on_list=lambda items, _t: cache.replace_claims(items),
                on_event=cache.apply_claim,
                settings=ws,
                on_restart=restart("resourceclaims"),
            ),
        ]
    return [
        Reflector(
            "nodes",
            source,
            pages=lambda _t: cache.node_pages(),
            on_event=cache.apply_node,
            settings=ws,
            on_restart=restart("nodes"),
        ),
        Reflector(
            "pods",
            source,
            pages=cache.pod_pages,
            on_event=cache.apply_pod,
            settings=ws,
            on_restart=restart("pods"),
        ),
        Reflector(  # only preemption reads PDBs (scheduler.disruption); readiness does not wait for them
            "poddisruptionbudgets",
            source,
            on_list=lambda items, _t: cache.disruption.replace_budgets(items),
            on_event=cache.disruption.apply_budget,
            settings=ws,
            on_restart=restart("poddisruptionbudgets"),
        ),
        *dra,
    ]


async def watch_podgroups(ctx: ExtenderContext, source: Source, kind: str) -> None:
    """Watch one PodGroup API while it is served (scheduler.gang.podgroups). A list answered 404 (no
    CRD, or the API group not enabled) or 403 (no RBAC) marks it unserved and is retried every
    `podgroup_recheck_seconds`; readiness never waits for PodGroups (a gang whose size is in one waits)."""
    gangs = ctx.gangs
    assert gangs is not None
    recheck = ctx.settings.gang.podgroup_recheck_seconds
    while True:
        try:
            await source.list(kind, limit=1, continue_token=None)
            break
        except asyncio.CancelledError:
            raise
        except ApiError as e:
            if e.status not in (403, 404):
                log.warning("listing %s failed: %s; retrying in %.0fs", kind, e, recheck)
            else:
                if gangs.podgroups is None or gangs.podgroups.served.get(KINDS[kind]) is not False:
                    log.info("%s not served (%s): gangs named by them wait unless their pods state a size; "
                             "checking again every %.0fs", kind, e, recheck)  # fmt: skip
                gangs.podgroups_unserved(kind, f"{e.status} {e.message}".strip())
        except Exception as e:
            log.warning("listing %s failed: %r; retrying in %.0fs", kind, e, recheck)
        await asyncio.sleep(recheck)
    log.info("watching %s", kind)
    await Reflector(
        kind,
        source,
        on_list=lambda items, _t: gangs.podgroups_listed(kind, items),
        on_event=lambda etype, obj: gangs.podgroup_event(kind, etype, obj),
        settings=ctx.settings.watch,
        on_restart=lambda why: ctx.metrics.watch_restarts.labels(kind, why).inc(),
    ).run()


async def load_gangs(ctx: ExtenderContext) -> None:
    """Reload the live gang plans (their holds) before the first pod list is applied: the list then
    drops the holds of members it shows bound or gone. Retries until the API server answers."""
    assert ctx.gangs is not None
    await until_it_works("loading gang plans", ctx.gangs.load, log, first=0.5, most=10.0)


async def watch_all(ctx: ExtenderContext, source: Source) -> None:
    """Nodes, then the gang plans (their holds need the nodes), then pods and PDBs: the first pod list
    then drops the holds of members it shows bound or gone, and readiness (both lists) implies the
    plans are loaded."""
    nodes, *rest = reflectors(ctx, source)
    if ctx.gangs is None:
        await asyncio.gather(*(r.run() for r in (nodes, *rest)))
        return
    node_task = asyncio.create_task(nodes.run(), name="watch-nodes")
    try:
        while not ctx.cache.synced["nodes"]:
            if node_task.done():
                node_task.result()  # raises what stopped it
            await asyncio.sleep(0.05)
        await load_gangs(ctx)
        podgroups = [watch_podgroups(ctx, source, k) for k in KINDS] if ctx.settings.gang.podgroups else []
        await asyncio.gather(node_task, *(r.run() for r in rest), *podgroups)
    finally:
        node_task.cancel()


async def expire_gangs_forever(ctx: ExtenderContext) -> None:
    """Gang plans with nothing bound are released at their TTL (checked every second)."""
    assert ctx.gangs is not None
    while True:
        await asyncio.sleep(1.0)
        try:
            ctx.gangs.expire()
        except Exception:
            log.exception("gang expiry failed")


async def warm_up(ctx: ExtenderContext) -> None:
    """Compile or load the Numba kernels off the event loop (seconds on a cold cache)."""
    await asyncio.get_running_loop().run_in_executor(None, placer.warmup)
    ctx.warm = True
    log.info("placement kernels warm")


async def sweep_forever(ctx: ExtenderContext) -> None:
    period = max(1.0, min(ctx.settings.reservation_ttl_seconds, hold_seconds(ctx.settings)) / 4)
    while True:
        await asyncio.sleep(period)
        try:
            rolled = await sweep(ctx)
            if rolled:
                log.warning("rolled back %d unconfirmed reservations", rolled)
        except Exception:
            log.exception("reservation sweep failed")


def attach_background(app: web.Application, source: Source | None) -> None:
    """Run warm-up, the reflectors (when `source` is given), the sweeper, and the take-over (holding
    what a previous process may still bind, scheduler.inflight, before the first verb) with the app."""

    async def background(app: web.Application) -> AsyncIterator[None]:
        ctx = app[CTX]
        tasks = [
            asyncio.create_task(warm_up(ctx), name="warmup"),
            asyncio.create_task(sweep_forever(ctx), name="sweeper"),
            asyncio.create_task(take_over(ctx, app[ROLE]), name="take-over"),
        ]
        if ctx.gangs is not None:
            tasks.append(asyncio.create_task(expire_gangs_forever(ctx), name="gang-expiry"))
        if source is not None:
            tasks.append(asyncio.create_task(watch_all(ctx, source), name="watch"))
        else:
            if ctx.gangs is not None:
                await load_gangs(ctx)
            ctx.cache.synced = dict.fromkeys(
                ctx.cache.synced, True
            )  # nothing to sync from (tests, benchmarks)
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if ctx.gangs is not None:
            await ctx.gangs.close()

    app.cleanup_ctx.append(background)
