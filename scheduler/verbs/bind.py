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
3. success (201, or a 409 the pod's state shows to be our own earlier write): the reservation is
   WRITTEN and waits for the watch (or the sweeper) to confirm it. A definitive refusal (4xx, or a
   409 for a pod re-created, being deleted or bound otherwise) rolls it back (HAMi #2308: bind
   failures not rolled back) and returns `Error`.

Lost answers (no response, our timeout, a 5xx, or this call cancelled mid-write): the Binding may have
committed, or may still commit. kube-apiserver keeps working on a request after its own 504 and after
the client left, until the request's deadline (v1.36 staging/src/k8s.io/apiserver: filters
`withRequestDeadline` sets it, the smaller of the `timeout` we send and --request-timeout;
`WithTimeoutForNonLongRunningRequests` answers 504 while the handler runs on), and an etcd write
proposed before that deadline can commit just after it. So:
- the pod is read once (a quorum read). Bound to this node with our record: success. Gone,
  re-created, being deleted or bound otherwise: the Binding can never commit (its one update refuses
  all of those), so roll back. Unbound, or unreadable: that proves nothing — the reservation becomes
  UNKNOWN and its GPUs stay booked until `hold_until` = sent + min(bind timeout,
  `apiserver_request_timeout_seconds`) + `apiserver_deadline_margin_seconds`; bind answers `Error`.
- UNKNOWN is never "bound". kube-scheduler's assumed pods never expire (v1.36
  pkg/scheduler/backend/cache `New` takes no TTL at all; older releases passed
  durationToExpireAssumedPod = 0), so answering a retry with success without a Binding would leave
  the pod Pending for good. A
  retry to the same node writes the same Binding again with the same GPUs (no re-choose: they are
  still booked for it): if the first write landed, the 409 + ownership check recognises it; if not,
  this one binds the pod; if this answer is lost too, the hold is extended from this send. A
  definitive refusal of a retry does not roll back while an earlier write may still commit. A bind
  to another node is refused while the outcome is unknown (bind errors go to kube-scheduler's
  backoff queue, so the pod is retried within seconds); the filter offers only the held node
  meanwhile (filter `_unknown_outcome`), so the retry goes there.
- The watch settles it at any time: the pod bound to the node turns the reservation into the pod's
  record; the pod deleted releases it (a deleted pod cannot be bound). After `hold_until` the sweeper
  reads the pod once more and confirms or rolls back; a failed read keeps the GPUs for the next sweep.
  GPUs are never handed out while a write that books them may still commit.
- A restart loses UNKNOWN reservations (nothing is stored outside the API server): the relist counts
  the pod by its record if the write landed. That is the whole truth once no write of the old process
  can commit: the Binding carries `?timeout=` = the bind timeout, and a graceful stop waits until
  every UNKNOWN outcome is settled or past its deadline (scheduler.service.drain; deploy/gpuplace
  restarts with Recreate). After a crash a late commit still arrives through the watch and is counted
  exactly, but if the new process gave those GPUs to another pod within that window they are
  oversubscribed (counted, `gpuplace_oversubscribed_pods_total`); scheduler/README.md says so.

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
from scheduler.binder import ApiError, ConflictError, NotSentError
from scheduler.cache import ReservationState
from scheduler.context import ExtenderContext
from scheduler.contract import Record, RecordError, decode_record, encode_record
from scheduler.dra.extender import confirm
from scheduler.nominated import describe, holding
from scheduler.podreq import PodRequestError, wants_gpus
from scheduler.settings import SchedulerSettings
from scheduler.wire import ExtenderBindingArgs, ExtenderBindingResult, Pod

log = logging.getLogger("gpuplace.scheduler.bind")


class BindFailedError(Exception):
    """A 409 that the pod's state does not explain as our own Binding; `verdict` says if it can land."""

    def __init__(self, message: str, verdict: str) -> None:
        super().__init__(message)
        self.verdict = verdict


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
        return await _write_and_settle(args, ctx, unknown.record or unknown.placement)
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
    if cache.dra is not None and (pod.spec.resource_claims or (wants_gpus(req) and cache.dra.devices(node))):
        record, why = await confirm(ctx, pod, node)  # DRA: PreBind allocated; check it is here
        if why:
            return _fail(args, why)
        if record is not None:
            return await _bind_dra(
                args, ctx, replace(record, cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)
            )
    if ctx.gangs is not None:  # a gang member binds on its planned node, once its quorum is here
        why = await ctx.gangs.before_bind(uid, node)
        if why:
            return _fail(args, why)
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
    return await _write_and_settle(args, ctx, placement)


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
        held = Placement(node=node, cpu_milli=record.cpu_milli, memory_mib=record.memory_mib)
        try:
            cache.reserve(uid, args.pod_namespace, args.pod_name, held, record=record)
        except (DoubleBookingError, KeyError) as e:
            return _fail(args, f"reservation failed: {e}")
    return await _write_and_settle(args, ctx, record)


def hold_seconds(settings: SchedulerSettings) -> float:
    """How long after it was sent a Binding may still commit: the server's deadline for it (the
    `timeout` KubeBinder sends, bind_timeout_seconds as gpuplace/serve.py builds it, capped by
    kube-apiserver's --request-timeout) plus the margin."""
    deadline = min(settings.bind_timeout_seconds, settings.apiserver_request_timeout_seconds)
    return deadline + settings.apiserver_deadline_margin_seconds


def _still_unknown(ctx: ExtenderContext, node: str, hold_until: float) -> str:
    left = max(0.0, hold_until - ctx.cache.clock())
    return (
        f"the outcome of a bind of this pod to {node} is unknown; its GPUs there stay held "
        f"until the watch shows it or the API server's deadline has passed (at most {left:.0f}s more)"
    )


async def _write_and_settle(
    args: ExtenderBindingArgs, ctx: ExtenderContext, placement: Placement
) -> ExtenderBindingResult:
    """Write the Binding for a reservation this call owns (state WRITING) and settle it: WRITTEN on
    success, rolled back when the Binding surely never lands, UNKNOWN (GPUs kept) otherwise — also
    when this call is cancelled or fails midway, so no reservation stays WRITING with no owner."""
    sent = ctx.cache.clock()
    try:
        verdict, why = await _write_outcome(args, ctx, _annotations(ctx, placement))
    except BaseException:  # cancelled (or a bug): the Binding may be on its way
        ctx.cache.unknown(args.pod_uid, sent + hold_seconds(ctx.settings))
        raise
    return _settle(args, ctx, placement, sent, verdict, why)


async def _write_outcome(
    args: ExtenderBindingArgs, ctx: ExtenderContext, annotations: dict[str, str]
) -> tuple[str, str]:
    """Write the Binding; (verdict, why) — OURS, or what the failure says about the write."""
    try:
        await asyncio.wait_for(_write(args, ctx, annotations), ctx.settings.bind_timeout_seconds)
    except BindFailedError as e:  # a 409, and the pod read after it
        return e.verdict, str(e)
    except (ApiError, TimeoutError) as e:
        why = str(e) or type(e).__name__
        if isinstance(e, NotSentError) or (isinstance(e, ApiError) and 0 < e.status < 500):
            return REFUSED, why  # never sent, or a definitive answer (400, 403, 404, 422, 429...)
        verdict, seen = await _look(ctx, args, annotations)  # no answer, a timeout, a 5xx
        return verdict, (f"{why}; {seen}" if verdict != OURS else why)
    return OURS, ""


def _settle(
    args: ExtenderBindingArgs, ctx: ExtenderContext, placement: Placement, sent: float, verdict: str, why: str
) -> ExtenderBindingResult:
    """Act on the verdict: WRITTEN, rolled back, or UNKNOWN held until this write's deadline."""
    uid, cache = args.pod_uid, ctx.cache
    if cache.bound_node(uid) == args.node and verdict != NEVER:  # the watch has shown it bound there
        verdict = OURS
    hold_until = sent + hold_seconds(ctx.settings)
    res = cache.reservations.get(uid)
    if verdict == REFUSED and res is not None and res.hold_until > cache.clock():
        verdict, hold_until = PENDING, res.hold_until  # this write failed; an earlier one may still land
    if verdict == OURS:
        cache.bound(uid)
        log.info("bound %s/%s to %s: %s", args.pod_namespace, args.pod_name, args.node, placement)
        return ExtenderBindingResult()
    if verdict in (NEVER, REFUSED):
        cache.rollback(uid, "bind failed")
        return _fail(args, why)
    cache.unknown(uid, hold_until)
    unknown = cache.outcome_unknown(uid)
    return _fail(args, f"{why}; {_still_unknown(ctx, args.node, unknown.hold_until if unknown else sent)}")


def _annotations(ctx: ExtenderContext, placement: Placement) -> dict[str, str]:
    """What the Binding writes on the pod: the placement record (+ the UUIDs when the node has them)."""
    inv = ctx.cache.nodes.get(placement.node)
    uuids = inv.uuids_for(placement.gpus, placement.mig) if inv is not None else []
    keys = ctx.requests.rules.keys
    annotations = {keys.gpus: encode_record(placement, uuids)}
    if uuids:
        annotations[keys.gpu_uuids] = ",".join(uuids)
    return annotations


# What a read of the pod says about our Binding (after a lost answer, a 409, or the deadline):
OURS = "ours"  # bound to the requested node with this placement's record
NEVER = "never"  # it can never commit: the pod is gone, re-created, being deleted or bound otherwise
PENDING = "pending"  # the pod is unbound: a Binding still on its way may commit (or none will)
REFUSED = "refused"  # kube-apiserver answered this write with a definitive error


def _verdict(
    ctx: ExtenderContext, args: ExtenderBindingArgs, raw: dict[str, Any] | None, mine: str
) -> tuple[str, str]:
    """(OURS | NEVER | PENDING, why) from the pod as the API server holds it. NEVER rests on
    `BindingREST.setPodNodeAndMetadata` (v1.36 pkg/registry/core/pod/storage/storage.go): its one update
    re-reads the pod and refuses a UID mismatch, a pod being deleted and a pod already assigned."""
    meta, spec = (raw or {}).get("metadata") or {}, (raw or {}).get("spec") or {}
    if raw is None or meta.get("uid") != args.pod_uid:
        return NEVER, "pod was deleted or re-created during bind"
    on = spec.get("nodeName")
    if not on:
        if meta.get("deletionTimestamp"):
            return NEVER, "pod is being deleted"
        return PENDING, "pod is not bound"
    if on != args.node:
        return NEVER, f"pod is bound to {on} meanwhile"
    theirs = (meta.get("annotations") or {}).get(ctx.requests.rules.keys.gpus)
    try:
        same = theirs is not None and _placed(decode_record(theirs)) == _placed(decode_record(mine))
    except RecordError:
        same = False
    return (OURS, "") if same else (NEVER, f"pod is bound to {on} with another placement ({theirs})")


def _placed(r: Record) -> tuple[Any, ...]:
    return r.node, r.gpus, r.milli, r.mig


async def _look(
    ctx: ExtenderContext, args: ExtenderBindingArgs, annotations: dict[str, str]
) -> tuple[str, str]:
    """After a lost answer: read the pod (a quorum read). OURS ends it; NEVER allows a rollback; an
    unbound pod proves nothing (the write may commit later), nor does a failed read: PENDING."""
    try:
        raw = await asyncio.wait_for(
            ctx.binder.get_pod(args.pod_namespace, args.pod_name), min(2.0, ctx.settings.bind_timeout_seconds)
        )
    except (ApiError, TimeoutError) as e:
        return PENDING, f"the pod could not be read ({str(e) or type(e).__name__})"
    return _verdict(ctx, args, raw, annotations[ctx.requests.rules.keys.gpus])


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
        raw = await ctx.binder.get_pod(ns, name)
        verdict, why = _verdict(ctx, args, raw, annotations[ctx.requests.rules.keys.gpus])
        if verdict != OURS:
            raise BindFailedError(
                f"{why} (API server: {e.message})", REFUSED if verdict == PENDING else verdict
            ) from None


async def sweep(ctx: ExtenderContext) -> int:
    """Settle what the watch has not: WRITTEN reservations older than the TTL, and UNKNOWN ones whose
    Binding can no longer commit (the deadline has passed). One read each; keep those the API server
    shows bound to their node, roll back the rest (pod unbound, deleted, re-created, bound elsewhere).
    A failed read keeps the reservation for the next sweep. Returns the number of rollbacks."""
    cache, n = ctx.cache, 0
    for r in cache.expired():
        state = r.state
        try:
            raw = await ctx.binder.get_pod(r.namespace, r.name)
        except ApiError as e:
            log.warning("reservation check of %s/%s failed: %s", r.namespace, r.name, e)
            continue
        if cache.reservations.get(r.uid) is not r or r.state != state:
            continue  # settled, or taken by a retry, while we asked
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
            why = (
                "outcome unknown, not bound by the deadline"
                if state == ReservationState.UNKNOWN
                else "unconfirmed"
            )
            log.info("rolling back the reservation of %s/%s on %s: %s", r.namespace, r.name, r.node, why)
            cache.rollback(r.uid, why)
            n += 1
    return n
