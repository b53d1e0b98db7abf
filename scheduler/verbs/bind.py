"""bind: choose the exact GPUs, reserve them, then create the Binding that carries them — or undo.

Order:
1. under the chosen node's lock (one asyncio.Lock per node; binds to different nodes never wait for
   each other, the HAMi #810 failure mode): re-validate the pod on that node against the live model
   and choose the GPUs (placer.choose) — the cluster may have changed since filter — and reserve them:
   allocate them in the ClusterState under the pod's UID. ClusterState.allocate refuses to book a GPU
   twice (DoubleBookingError, impossible by construction and still caught), so choose + reserve is
   the whole critical section;
2. outside the lock, the intent: a merge patch of `gpuplace.io/binding` (the record about to be sent and
   the Binding's deadline; the pod's UID as precondition) — the evidence a later process reads to hold
   these GPUs while this Binding may still commit (scheduler/inflight.py); nothing is sent unless it
   was acknowledged. Then the Binding: POST pods/binding with metadata {uid, annotations:
   `gpuplace.io/gpus`, `gpuplace.io/gpu-uuids`} and target the node. kube-apiserver applies it as one
   etcd update (`BindingREST.setPodNodeAndMetadata`): the UID is a precondition (a pod re-created under
   the same name is neither bound nor annotated: 409), a pod being deleted or already assigned is
   refused (409), else spec.nodeName is set and the annotations are merged. So the placement record
   exists on a pod exactly when the pod is bound — what the cache rebuilds from after a restart;
3. success (201, or a 409 the pod's state shows to be our own earlier write): the reservation is
   WRITTEN and waits for the watch (or the sweeper) to confirm it. A definitive refusal (4xx, or a
   409 for a pod re-created, being deleted or bound otherwise) rolls it back (HAMi #2308: bind
   failures not rolled back) and returns `Error`.

Lost answers (no response, our timeout, a 5xx, or this call cancelled mid-write), and what each
read of the pod says about the Binding: scheduler/verbs/bind_outcome.py, which writes the Binding,
settles the reservation and runs the sweeper.

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
in-flight table also keeps one pod from being reserved twice); a retry for a pod already bound (its
record from the watch, or a WRITTEN reservation) to the same node succeeds without writing again; a
409 from the Binding is success only when the pod (same UID) is on the requested node and carries our
record for this placement — else it fails and the reservation is rolled back (the pod then counts by
whatever record it carries, via the watch).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from placement_core import DoubleBookingError, Placement, explain, placer
from scheduler.context import ExtenderContext
from scheduler.dra.extender import confirm
from scheduler.nominated import describe, holding
from scheduler.podreq import PodRequestError, wants_gpus
from scheduler.verbs.bind_outcome import fail as _fail
from scheduler.verbs.bind_outcome import hold_seconds, sweep
from scheduler.verbs.bind_outcome import still_unknown as _still_unknown
from scheduler.verbs.bind_outcome import write_and_settle as _write_and_settle
from scheduler.wire import ExtenderBindingArgs, ExtenderBindingResult, Pod

__all__ = ["bind", "hold_seconds", "sweep"]  # hold_seconds and sweep: scheduler.service's imports

log = logging.getLogger("gpuplace.scheduler.bind")


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
    """(result, metric label: ok | idempotent | failed | unknown)."""
    res = await _attempt(args, ctx)
    if isinstance(res, str):
        return ExtenderBindingResult(), res
    if not res.error:
        return res, "ok"
    if ctx.gangs is not None:
        ctx.gangs.bind_failed(args.pod_uid)  # the plan keeps its GPUs (scheduler.gang)
    return res, "unknown" if ctx.cache.outcome_unknown(args.pod_uid) is not None else "failed"


async def _attempt(args: ExtenderBindingArgs, ctx: ExtenderContext) -> ExtenderBindingResult | str:
    """A result, or the metric label "idempotent" when the pod is bound there already."""
    uid, node, cache = args.pod_uid, args.node, ctx.cache
    already = cache.bound_node(uid)
    if already is not None:
        if already == node:
            return "idempotent"
        return _fail(args, f"pod is already bound to {already}")
    unknown = cache.outcome_unknown(uid)
    if unknown is not None:  # an earlier Binding's answer was lost: write it again, same GPUs
        if unknown.node != node:
            return _fail(args, _still_unknown(ctx, unknown.node, unknown.hold_until))
        cache.resume(uid)
        return await _write_and_settle(args, ctx, unknown.record or unknown.placement, intent=False)
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
    if ctx.gangs is not None:  # a gang member binds on its planned node, once its quorum is here,
        why = await ctx.gangs.before_bind(uid, node)  # also when PreBind allocated its GPUs as a claim
        if why:
            return _fail(args, why)
    if cache.dra is not None and (pod.spec.resource_claims or (wants_gpus(req) and cache.dra.devices(node))):
        record, why = await confirm(ctx, pod, node)  # DRA: PreBind allocated; check it is here
        if why:
            return _fail(args, why)
        if record is not None:
            return await _bind_dra(
                args, ctx, replace(record, cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)
            )
    async with cache.node_lock(node):  # re-validate + choose + reserve; no I/O in here
        if cache.bound_node(uid) == node:  # the watch confirmed it while we waited
            return "idempotent"
        if cache.outcome_unknown(uid) is not None or uid in cache.reservations:
            return _fail(args, "another bind of this pod is being settled")
        if ctx.gangs is not None:
            ctx.gangs.take_hold(uid, node)  # the member's planned GPUs become its own to choose from
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
    return await _write_and_settle(args, ctx, placement, intent=ctx.settings.bind_intent)


async def _bind_dra(
    args: ExtenderBindingArgs, ctx: ExtenderContext, record: Placement
) -> ExtenderBindingResult | str:
    """Bind a pod whose claims kube-scheduler allocated on this node: its GPUs are booked through the
    claims (scheduler.dra), so the reservation holds only its cpu/memory; the record names the devices
    actually allocated."""
    uid, node, cache = args.pod_uid, args.node, ctx.cache
    async with cache.node_lock(node):
        if cache.bound_node(uid) == node:
            return "idempotent"
        if cache.outcome_unknown(uid) is not None or uid in cache.reservations:
            return _fail(args, "another bind of this pod is being settled")
        if ctx.gangs is not None:
            ctx.gangs.take_hold(uid, node)  # a gang member's claim holds its GPUs now, not the plan
        held = Placement(node=node, cpu_milli=record.cpu_milli, memory_mib=record.memory_mib)
        try:
            cache.reserve(uid, args.pod_namespace, args.pod_name, held, record=record)
        except (DoubleBookingError, KeyError) as e:
            return _fail(args, f"reservation failed: {e}")
    return await _write_and_settle(args, ctx, record, intent=False)


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
