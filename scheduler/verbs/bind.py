"""bind: choose the exact GPUs, reserve them, then create the Binding that carries them — or undo.

Order:
1. under the chosen node's lock (one asyncio.Lock per node; binds to different nodes never wait for
   each other, the HAMi #810 failure mode): re-validate the pod on that node against the live model
   and choose the GPUs (placer.choose) — the cluster may have changed since filter — and reserve them:
   allocate them in the ClusterState under the pod's UID. ClusterState.allocate refuses to book a GPU
   twice (DoubleBookingError, impossible by construction and still caught), so choose + reserve is
   the whole critical section;
2. outside the lock, ONE API write: POST pods/binding with metadata {uid, annotations:
   `gpuplace.io/gpus`, `gpuplace.io/gpu-uuids`} and target the node. kube-apiserver applies it as one
   etcd update (`BindingREST.setPodNodeAndMetadata`): the UID is a precondition (a pod re-created under
   the same name is neither bound nor annotated: 409), a pod being deleted or already assigned is
   refused (409), else spec.nodeName is set and the annotations are merged. So the placement record
   exists on a pod exactly when the pod is bound — what the cache rebuilds from after a restart;
3. success: the reservation waits for the watch (or the sweeper) to confirm it.
Any failure of step 2 rolls the reservation back (HAMi #2308: bind failures not rolled back) and
returns `Error`. After a timeout or 5xx the write may still have landed, so the pod is read first and
the reservation kept when it is bound to this node with our record.

Why the API write is outside the lock, and why that is safe. Safe: the reservation is in the
ClusterState before the lock is released, so the next bind to the node chooses around it; the
rollback (cache.rollback) releases only this pod's reservation — it is keyed by the pod's UID and
releases nothing unless that UID still holds exactly the reserved placement — so it can never free
someone else's GPUs, and a failed bind only returns GPUs no one else was given. Why it matters:
holding the lock across the API round trips (tens of ms under load) serialised all binds to a node
behind each other's writes; kube-scheduler runs binds concurrently, and with its bind calls queued
behind gpuplace's API writes its Go HTTP client (2 idle connections per host) kept opening new TLS
connections to gpuplace — measured under upstream kube-scheduler v1.36.3 in
bench/scheduler_throughput.py.

Idempotent per UID: a retry while the first call is in flight awaits that call's result (the
in-flight table also keeps one pod from being reserved twice); a retry for a pod already bound (or
reserved and bound) to the same node succeeds without allocating again; a 409 from the Binding is
success only when the pod (same UID) is on the requested node and carries our record for this
placement — else it fails and the reservation is rolled back (the pod then counts by whatever record
it carries, via the watch).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from placement_core import DoubleBookingError, Placement, explain, placer
from scheduler.binder import ApiError, ConflictError
from scheduler.context import ExtenderContext
from scheduler.contract import Record, RecordError, decode_record, encode_record
from scheduler.nominated import describe, holding
from scheduler.podreq import PodRequestError
from scheduler.wire import ExtenderBindingArgs, ExtenderBindingResult, Pod

log = logging.getLogger("gpuplace.scheduler.bind")


class BindFailedError(Exception):
    pass


async def bind(args: ExtenderBindingArgs, ctx: ExtenderContext) -> ExtenderBindingResult:
    """The bind verb; errors are returned in-band (`Error`), never raised."""
    uid = args.pod_uid
    running = ctx.binds_inflight.get(uid)
    if running is not None:
        if running[0] != args.node:
            return _fail(args, f"a bind of this pod to {running[0]} is in progress")
        return await asyncio.shield(running[1])
    fut: asyncio.Future[ExtenderBindingResult] = asyncio.get_running_loop().create_future()
    ctx.binds_inflight[uid] = (args.node, fut)
    outcome, result = "failed", ExtenderBindingResult(error="gpuplace: bind cancelled")
    try:
        result, outcome = await _bind(args, ctx)
    except Exception as e:  # never let a bind take the handler down
        log.exception("bind %s/%s", args.pod_namespace, args.pod_name)
        result = ExtenderBindingResult(error=f"gpuplace: internal error: {e!r}")
    finally:
        del ctx.binds_inflight[uid]
        if not fut.done():  # also when cancelled: waiters get an answer, never hang
            fut.set_result(result)
    ctx.metrics.binds.labels(outcome).inc()
    return result


def _fail(args: ExtenderBindingArgs, why: str) -> ExtenderBindingResult:
    log.info("bind %s/%s to %s failed: %s", args.pod_namespace, args.pod_name, args.node, why)
    return ExtenderBindingResult(
        error=f"gpuplace: cannot bind {args.pod_namespace}/{args.pod_name} to {args.node}: {why}"
    )


async def _pod_for(args: ExtenderBindingArgs, ctx: ExtenderContext) -> tuple[Pod | None, str]:
    """The pod (filter's copy, else from the API) and why not when it cannot be used."""
    pod = ctx.recent_pods.get(args.pod_uid)
    if (
        pod is not None
        and pod.metadata.name == args.pod_name
        and pod.metadata.namespace == args.pod_namespace
    ):
        return pod, ""
    raw = await ctx.binder.get_pod(args.pod_namespace, args.pod_name)
    if raw is None:
        return None, "pod not found"
    pod = Pod.model_validate(raw)
    if pod.metadata.uid != args.pod_uid:
        return None, f"pod UID is {pod.metadata.uid}, not {args.pod_uid} (re-created)"
    return pod, ""


async def _bind(args: ExtenderBindingArgs, ctx: ExtenderContext) -> tuple[ExtenderBindingResult, str]:
    """(result, metric label: ok | idempotent | failed)."""
    res = await _attempt(args, ctx)
    if isinstance(res, str):
        return ExtenderBindingResult(), res
    return res, "failed" if res.error else "ok"


async def _attempt(args: ExtenderBindingArgs, ctx: ExtenderContext) -> ExtenderBindingResult | str:
    uid, node, cache = args.pod_uid, args.node, ctx.cache
    already = cache.bound_node(uid)
    if already is not None:
        if already == node:
            return "idempotent"
        return _fail(args, f"pod is already bound to {already}")
    pod, why = await _pod_for(args, ctx)
    if pod is None:
        return _fail(args, why)
    if pod.spec.node_name:
        if pod.spec.node_name == node:
            return "idempotent"
        return _fail(args, f"pod is already bound to {pod.spec.node_name}")
    try:
        req = ctx.requests.get(pod)
    except PodRequestError as e:
        return _fail(args, str(e))
    async with cache.node_lock(node):  # re-validate + choose + reserve; no I/O in here
        if cache.bound_node(uid) == node:  # the watch confirmed it while we waited
            return "idempotent"
        held = cache.nominated.against(uid, pod.spec.priority, node)  # scheduler.nominated
        with holding(cache, held):
            placement = placer.choose(cache.state, node, req)
        if placement is None:
            free = bool(held) and placer.choose(cache.state, node, req) is not None
            return _fail(args, describe(held) if free else _why_not(ctx, node, req))
        try:
            cache.reserve(uid, args.pod_namespace, args.pod_name, placement)
        except (DoubleBookingError, KeyError) as e:
            return _fail(args, f"reservation failed: {e}")
    annotations = _annotations(ctx, placement)
    try:
        await asyncio.wait_for(_write(args, ctx, annotations), ctx.settings.bind_timeout_seconds)
    except (ApiError, BindFailedError, TimeoutError) as e:
        lost_answer = isinstance(e, TimeoutError) or (isinstance(e, ApiError) and not 0 < e.status < 500)
        landed = await _landed(ctx, args, annotations) if lost_answer else False
        if landed is None:
            # Nobody can say whether the Binding landed. Keep the GPUs reserved (never hand them out
            # while the pod may run on them); the reconciler confirms or releases the reservation from
            # the watch within reservation_ttl_seconds.
            cache.bound(uid)
            return _fail(
                args,
                f"{str(e) or type(e).__name__}; outcome unknown, GPUs held until the watch shows the pod",
            )
        if not landed:
            cache.rollback(uid, "bind failed")
            return _fail(args, str(e) or type(e).__name__)
    except BaseException:
        cache.rollback(uid, "bind failed")
        raise
    cache.bound(uid)
    log.info("bound %s/%s to %s: %s", args.pod_namespace, args.pod_name, node, placement)
    return ExtenderBindingResult()


def _annotations(ctx: ExtenderContext, placement: Placement) -> dict[str, str]:
    """What the Binding writes on the pod: the placement record (+ the UUIDs when the node has them)."""
    inv = ctx.cache.nodes.get(placement.node)
    uuids = inv.uuids_for(placement.gpus, placement.mig) if inv is not None else []
    keys = ctx.requests.rules.keys
    annotations = {keys.gpus: encode_record(placement, uuids)}
    if uuids:
        annotations[keys.gpu_uuids] = ",".join(uuids)
    return annotations


def _ours(ctx: ExtenderContext, args: ExtenderBindingArgs, raw: dict[str, Any] | None, mine: str) -> str:
    """Why `raw` is not our pod bound to the requested node with the record `mine`; "" when it is."""
    meta, spec = (raw or {}).get("metadata") or {}, (raw or {}).get("spec") or {}
    if raw is None or meta.get("uid") != args.pod_uid:
        return "pod was deleted or re-created during bind"
    on = spec.get("nodeName")
    if on != args.node:
        return f"pod is bound to {on} meanwhile" if on else "pod is not bound"
    theirs = (meta.get("annotations") or {}).get(ctx.requests.rules.keys.gpus)
    try:
        same = theirs is not None and _placed(decode_record(theirs)) == _placed(decode_record(mine))
    except RecordError:
        same = False
    return "" if same else f"pod is bound to {on} with another placement ({theirs})"


def _placed(r: Record) -> tuple[Any, ...]:
    return r.node, r.gpus, r.milli, r.mig


async def _landed(
    ctx: ExtenderContext, args: ExtenderBindingArgs, annotations: dict[str, str]
) -> bool | None:
    """After a timeout or 5xx the API server may still have bound the pod: look before rolling back,
    or the GPUs would be handed out again while the pod runs on them. None when the look fails too."""
    try:
        raw = await asyncio.wait_for(ctx.binder.get_pod(args.pod_namespace, args.pod_name), 2.0)
    except (ApiError, TimeoutError):
        return None
    return _ours(ctx, args, raw, annotations[ctx.requests.rules.keys.gpus]) == ""


def _why_not(ctx: ExtenderContext, node: str, req: Any) -> str:
    state = ctx.cache.state
    row = state.index.get(node)
    if row is None:
        return "node is unknown to gpuplace"
    reason, detail = placer.evaluate(state, req, rows=slice(row, row + 1))
    models = ", ".join(sorted(req.models)) if req.models else "any"
    return "no longer fits: " + explain(
        int(reason[0]),
        int(detail[0]),
        what=req.describe(),
        count=req.count,
        milli=req.milli,
        min_memory_mib=req.min_memory_mib,
        mig_profile=req.mig_profile,
        models=models,
    )


async def _write(args: ExtenderBindingArgs, ctx: ExtenderContext, annotations: dict[str, str]) -> None:
    """The one API write: the Binding, carrying the UID precondition and the annotations."""
    ns, name, uid = args.pod_namespace, args.pod_name, args.pod_uid
    try:
        await ctx.binder.bind(ns, name, uid=uid, node=args.node, annotations=annotations)
    except ConflictError as e:  # re-created, being deleted, or already assigned: by us (a lost answer)?
        why = _ours(ctx, args, await ctx.binder.get_pod(ns, name), annotations[ctx.requests.rules.keys.gpus])
        if why:
            raise BindFailedError(f"{why} (API server: {e.message})") from None


async def sweep(ctx: ExtenderContext) -> int:
    """Settle reservations the watch has not confirmed within the TTL: keep those the API server shows
    bound to their node, roll back the rest (pod deleted, re-created, bound elsewhere). Returns rollbacks."""
    cache, n = ctx.cache, 0
    for r in cache.expired():
        try:
            raw = await ctx.binder.get_pod(r.namespace, r.name)
        except ApiError as e:
            log.warning("reservation check of %s/%s failed: %s", r.namespace, r.name, e)
            continue
        if cache.reservations.get(r.uid) is not r:
            continue  # settled while we asked
        meta, spec = (raw or {}).get("metadata") or {}, (raw or {}).get("spec") or {}
        phase = ((raw or {}).get("status") or {}).get("phase")
        if (
            raw is not None
            and meta.get("uid") == r.uid
            and spec.get("nodeName") == r.node
            and phase not in ("Succeeded", "Failed")
        ):
            cache.apply_pod("MODIFIED", raw)
            cache.reservations.pop(r.uid, None)
        else:
            cache.rollback(r.uid, "unconfirmed")
            n += 1
    return n
