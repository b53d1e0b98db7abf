"""What became of a Binding: write it, settle the reservation by the answer (or by a read of the pod
when the answer was lost), and sweep what the watch has not settled. The bind verb
(scheduler/verbs/bind.py) chooses and reserves the GPUs, then hands the reservation to
:func:`write_and_settle`.

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
- A restart (or a new leader) loses this process's UNKNOWN reservations, but not their evidence: every
  Binding is preceded by its intent on the pod (`gpuplace.io/binding`, written only to the pod with
  this UID, and the Binding is sent only once that write was acknowledged). Before its first verb the
  next process lists the unbound pods and holds the GPUs each intent names as UNKNOWN, until that
  Binding's deadline counted from its own take-over (scheduler/inflight.py); the watch, a retry or
  the sweeper then settles it as above. So a stop, graceful or not, waits for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from placement_core import Placement
from scheduler.binder import ApiError, ConflictError, NotSentError
from scheduler.cache import ReservationState
from scheduler.context import ExtenderContext
from scheduler.contract import Record, RecordError, decode_record, encode_intent, encode_record
from scheduler.inflight import HOLDER, commit_window_seconds
from scheduler.settings import SchedulerSettings
from scheduler.wire import ExtenderBindingArgs, ExtenderBindingResult

log = logging.getLogger("gpuplace.scheduler.bind")  # the verb's logger: one log stream for a bind


class BindFailedError(Exception):
    """A 409 that the pod's state does not explain as our own Binding; `verdict` says if it can land."""

    def __init__(self, message: str, verdict: str) -> None:
        super().__init__(message)
        self.verdict = verdict


def fail(args: ExtenderBindingArgs, why: str) -> ExtenderBindingResult:
    log.info("bind %s/%s to %s failed: %s", args.pod_namespace, args.pod_name, args.node, why)
    return ExtenderBindingResult(
        error=f"gpuplace: cannot bind {args.pod_namespace}/{args.pod_name} to {args.node}: {why}"
    )


def hold_seconds(settings: SchedulerSettings) -> float:
    """How long after it was sent a Binding may still commit: the server's deadline for it (the
    `timeout` KubeBinder sends, bind_timeout_seconds as gpuplace/serve.py builds it, capped by
    kube-apiserver's --request-timeout) plus the margin."""
    return commit_window_seconds(settings.bind_timeout_seconds, settings)


def still_unknown(ctx: ExtenderContext, node: str, hold_until: float) -> str:
    left = max(0.0, hold_until - ctx.cache.clock())
    return (
        f"the outcome of a bind of this pod to {node} is unknown; its GPUs there stay held "
        f"until the watch shows it or the API server's deadline has passed (at most {left:.0f}s more)"
    )


async def write_and_settle(
    args: ExtenderBindingArgs, ctx: ExtenderContext, placement: Placement, *, intent: bool = True
) -> ExtenderBindingResult:
    """Write the Binding for a reservation this call owns (state WRITING) and settle it: WRITTEN on
    success, rolled back when the Binding surely never lands, UNKNOWN (GPUs kept) otherwise — also
    when this call is cancelled or fails midway, so no reservation stays WRITING with no owner.

    `intent`: first write `gpuplace.io/binding` on the pod (scheduler.inflight says why); False for a
    retry of an unknown outcome (the first attempt wrote it) and for DRA pods (their claims hold the
    GPUs). Until the Binding is sent nothing can commit, so a failure before that rolls back."""
    sent = _Sent()
    annotations = _annotations(ctx, placement)
    marker = _intent(ctx, annotations) if intent else None
    try:
        verdict, why = await _write_outcome(args, ctx, annotations, marker, sent)
    except BaseException:  # cancelled (or a bug): the Binding may be on its way
        if sent.at is None:
            ctx.cache.rollback(args.pod_uid, "bind cancelled before its Binding was sent")
        else:
            ctx.cache.unknown(args.pod_uid, sent.at + hold_seconds(ctx.settings))
        raise
    return _settle(args, ctx, placement, sent.at, verdict, why)


@dataclass(slots=True)
class _Sent:
    at: float | None = None  # when the Binding went out (cache clock); None: never sent, cannot commit


def _intent(ctx: ExtenderContext, annotations: dict[str, str]) -> dict[str, str]:
    keys = ctx.requests.rules.keys
    value = encode_intent(
        annotations[keys.gpus],
        timeout_seconds=ctx.settings.bind_timeout_seconds,  # the ?timeout= KubeBinder sends
        holder=HOLDER,
        sent=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    return {keys.binding: value}


async def _write_outcome(
    args: ExtenderBindingArgs,
    ctx: ExtenderContext,
    annotations: dict[str, str],
    intent: dict[str, str] | None,
    sent: _Sent,
) -> tuple[str, str]:
    """Write the intent (if any), then the Binding, in one budget; (verdict, why) — OURS, or what the
    failure says about the write."""
    try:
        await asyncio.wait_for(
            _write(args, ctx, annotations, intent, sent), ctx.settings.bind_timeout_seconds
        )
    except BindFailedError as e:  # a 409, and the pod read after it
        return e.verdict, str(e)
    except (ApiError, TimeoutError) as e:
        why = str(e) or type(e).__name__
        if sent.at is None:  # the intent failed or timed out: no Binding was sent
            if isinstance(e, ApiError) and e.status == 422 and "uid" in e.message.lower():
                why = f"pod was re-created under its name ({why})"  # the intent's UID precondition
            return REFUSED, f"writing {ctx.requests.rules.keys.binding} failed ({why}); no Binding was sent"
        if isinstance(e, NotSentError) or (isinstance(e, ApiError) and 0 < e.status < 500):
            return REFUSED, why  # never sent, or a definitive answer (400, 403, 404, 422, 429...)
        verdict, seen = await _look(ctx, args, annotations)  # no answer, a timeout, a 5xx
        return verdict, (f"{why}; {seen}" if verdict != OURS else why)
    return OURS, ""


def _settle(
    args: ExtenderBindingArgs,
    ctx: ExtenderContext,
    placement: Placement,
    sent: float | None,
    verdict: str,
    why: str,
) -> ExtenderBindingResult:
    """Act on the verdict: WRITTEN, rolled back, or UNKNOWN held until this write's deadline."""
    uid, cache = args.pod_uid, ctx.cache
    if cache.bound_node(uid) == args.node and verdict != NEVER:  # the watch has shown it bound there
        verdict = OURS
    sent = cache.clock() if sent is None else sent  # (not sent: the verdict is REFUSED)
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
        return fail(args, why)
    cache.unknown(uid, hold_until)
    unknown = cache.outcome_unknown(uid)
    return fail(args, f"{why}; {still_unknown(ctx, args.node, unknown.hold_until if unknown else sent)}")


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


async def _write(
    args: ExtenderBindingArgs,
    ctx: ExtenderContext,
    annotations: dict[str, str],
    intent: dict[str, str] | None,
    sent: _Sent,
) -> None:
    """The intent (UID precondition), then the Binding (UID precondition, the record annotations)."""
    ns, name, uid = args.pod_namespace, args.pod_name, args.pod_uid
    if intent is not None:
        await ctx.binder.annotate_pod(ns, name, uid=uid, annotations=intent)
    sent.at = ctx.cache.clock()  # from here on the Binding may be on its way
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
