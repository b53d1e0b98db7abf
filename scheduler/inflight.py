"""Binds a previous process may still have in flight: found on the pods, held until they can no longer commit.

The gap this closes. kube-apiserver keeps working on a request after its client has gone, until the
request's deadline (v1.36 staging/src/k8s.io/apiserver/pkg/endpoints/filters/request_deadline.go,
`withRequestDeadline`: the smaller of the request's `?timeout=` and --request-timeout;
staging/src/k8s.io/apiserver/pkg/server/filters/timeout.go, `WithTimeoutForNonLongRunningRequests`,
answers 504 while the handler runs on), and the Binding's one etcd update
(pkg/registry/core/pod/storage/storage.go, `BindingREST.setPodNodeAndMetadata`) can commit that late.
A process that dies (SIGKILL, OOM, node loss, a leader replaced) forgets the GPUs it reserved for such
a Binding; the next process lists the pod unbound, and without evidence would hand those GPUs to
another pod — two pods on one GPU once the old Binding commits.

The evidence. Before it sends a Binding, bind writes `gpuplace.io/binding` on the pod (a merge patch
with the pod's UID as precondition; scheduler.contract): the record the Binding carries and its
`?timeout=`. The Binding is sent only once that write was acknowledged, so every Binding that may
still commit has its intent on an unbound pod. (kube-scheduler ignores updates of a pod it has
assumed, pkg/scheduler/eventhandlers.go `updatePodInSchedulingQueue`, so the write does not disturb
the binding cycle; HAMi's scheduler writes its bind-phase annotations before the Binding the same way.)

The hold. Once this process may bind — leading (scheduler.leader), with its cache synced and kernels
warm — and before it answers any verb, it lists the unbound pods (a consistent read) and reserves
the GPUs each intent names, as an UNKNOWN reservation (scheduler.reservations) held until
`since + min(timeout_seconds, apiserver_request_timeout_seconds) + apiserver_deadline_margin_seconds`.
`since` is when this process started leading; any earlier process sent its last Binding before that
(a leader stops binding `renew_deadline` after its last renewal, before any follower may take the
Lease; a Recreate restart starts after the old process is gone). From there the bind machinery
settles it as it settles its own lost answers: the watch shows the pod bound (its record counts) or
deleted (released); kube-scheduler's retry of that pod writes the same Binding again on the same
GPUs; after the deadline the sweeper reads the pod and rolls back unless it is bound there. So the
hold always ends, and no other pod gets those GPUs meanwhile.

Limits, plainly: an intent whose GPUs are already booked in this process's model (a bound pod's
record, a gang plan) is not held twice (logged); an intent left on a pod whose Binding was refused
only costs that pod's GPUs one more deadline after a takeover (the next bind overwrites it).

Without intents (`bind_intent: false`: one API write fewer per pod). Nothing says which GPUs a
predecessor's Binding names, so instead of holding them this process waits the Bindings out: if any
unbound pod asks for GPUs when it takes over — a Binding can only commit for a pod unbound then — it
answers no verb until `since + commit_window_seconds(bind_timeout_seconds)`, by which time every such
Binding has committed or never will. It then lists the unbound pods again and reads each one that left
the list meanwhile (bound or deleted) into its cache, so the model it answers from has every such
Binding that committed, whether or not the watch has shown it yet. Nothing pending at take-over: no
wait. The wait assumes the predecessor ran with the same bind_timeout_seconds (its `?timeout=`);
intents a predecessor did write are held as above either way. Left to the watch, in both modes: a pod
bound after this process's first pod list and before its take-over list, which the watch shows
moments later (a watch lagging by more than that gap leaves its GPUs looking free meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from placement_core import DoubleBookingError
from scheduler.contract import RecordError, decode_intent
from scheduler.leader import Role
from scheduler.podreq import PodRequestError, wants_gpus
from scheduler.retry import until_it_works
from scheduler.settings import SchedulerSettings
from scheduler.wire import Pod

if TYPE_CHECKING:
    from scheduler.context import ExtenderContext

log = logging.getLogger("gpuplace.scheduler.inflight")
HOLDER = f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"  # for people reading the pod


def commit_window_seconds(timeout_seconds: float | None, settings: SchedulerSettings) -> float:
    """How long after it was sent a Binding with `?timeout=timeout_seconds` (None: none) may still commit:
    the server's deadline for it, capped by kube-apiserver's --request-timeout, plus the margin. The one
    rule for this process's own Bindings (scheduler.verbs.bind_outcome.hold_seconds) and for those a
    predecessor sent (counted from `since` below)."""
    deadline = settings.apiserver_request_timeout_seconds
    if timeout_seconds is not None:
        deadline = min(deadline, timeout_seconds)
    return deadline + settings.apiserver_deadline_margin_seconds


async def hold_inherited(ctx: ExtenderContext, pending: list[dict[str, Any]], *, since: float) -> int:
    """Reserve the GPUs of every unbound pod in `pending` carrying an intent (none of this process's
    own: it has bound nothing yet) as UNKNOWN until its Binding's deadline counted from `since`.
    Returns how many."""
    cache, keys = ctx.cache, ctx.requests.rules.keys
    held = 0
    for raw in pending:
        meta: dict[str, Any] = raw.get("metadata") or {}
        value = (meta.get("annotations") or {}).get(keys.binding)
        uid = str(meta.get("uid") or "")
        if not value or not uid or meta.get("deletionTimestamp") or (raw.get("spec") or {}).get("nodeName"):
            continue  # no intent; or being deleted or bound: then no Binding can (or need) commit
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        try:
            intent = decode_intent(value)
        except RecordError as e:
            log.warning("pod %s: unreadable %s (%s); nothing held for it", key, keys.binding, e)
            continue
        if uid in cache.reservations or cache.bound_node(uid) is not None:
            continue
        if intent.record.node not in cache.state.index:
            continue  # the node is gone: a Binding to it cannot be honoured
        try:
            req = ctx.requests.get(Pod.model_validate(raw))
            cpu, mem = req.cpu_milli, req.memory_mib
        except (PodRequestError, ValueError):
            cpu = mem = 0
        placement = intent.record.placement(cpu, mem)
        until = since + commit_window_seconds(intent.timeout_seconds, ctx.settings)
        async with cache.node_lock(placement.node):
            try:
                cache.reserve(uid, str(meta.get("namespace")), str(meta.get("name")), placement)
            except (DoubleBookingError, KeyError) as e:
                log.warning(
                    "pod %s: the GPUs of its possible Binding (%s) are booked already: %s",
                    key,
                    intent.holder,
                    e,
                )
                continue
            cache.unknown(uid, until)
        held += 1
        log.info(
            "holding %s for %s: a Binding sent by %s at %s may still commit (for at most %.0fs)",
            placement, key, intent.holder or "a previous process", intent.sent or "?", until - cache.clock(),
        )  # fmt: skip
    return held


async def take_over(ctx: ExtenderContext, role: Role, *, poll: float = 0.05) -> None:
    """Once this process may bind (`role` leads, cache synced, kernels warm), hold what a predecessor
    may have in flight, then let the verbs be answered (`ctx.inherited`). Retries until the list works."""
    while not (ctx.synced and role.is_leader()):  # noqa: ASYNC110 -- polled: leadership and readiness are clocks and flags
        await asyncio.sleep(poll)
    since = ctx.cache.clock()
    pending = await _list_pending(ctx)
    n = await hold_inherited(ctx, pending, since=since)
    if n:
        log.warning("holding the GPUs of %d pods whose Binding a previous process may still commit", n)
    if not ctx.settings.bind_intent:
        await wait_out_bindings(ctx, pending, since=since, poll=poll)
    ctx.inherited = True


async def _list_pending(ctx: ExtenderContext) -> list[dict[str, Any]]:
    """The unbound pods (a consistent read), retried until the list works."""
    return await until_it_works(
        "listing unbound pods for binds still in flight", ctx.binder.pending_pods, log
    )


def _may_be_in_flight(ctx: ExtenderContext, raw: dict[str, Any]) -> bool:
    """Could a predecessor have a Binding with GPUs in flight for this unbound pod? Yes unless it is
    being deleted or surely asks for no GPUs (an unreadable request counts as yes)."""
    if (raw.get("metadata") or {}).get("deletionTimestamp"):
        return False
    try:
        return wants_gpus(ctx.requests.get(Pod.model_validate(raw)))
    except (PodRequestError, ValueError):
        return True


async def wait_out_bindings(
    ctx: ExtenderContext, pending: list[dict[str, Any]], *, since: float, poll: float = 0.05
) -> None:
    """`bind_intent: false`: wait until no Binding a predecessor sent can still commit, then read every
    pod that left the unbound list meanwhile into the cache (see the module docstring)."""
    cache = ctx.cache
    candidates = {
        str((p.get("metadata") or {}).get("uid") or "") for p in pending if _may_be_in_flight(ctx, p)
    }
    candidates.discard("")
    if not candidates:
        return
    until = since + commit_window_seconds(ctx.settings.bind_timeout_seconds, ctx.settings)
    log.warning(
        "%d unbound GPU pods at take-over and no bind intents (bind_intent: false): answering no verb "
        "for %.0fs, until any Binding a previous process sent has committed or died",
        len(candidates), until - cache.clock(),
    )  # fmt: skip
    while (left := until - cache.clock()) > 0:  # noqa: ASYNC110 -- a deadline on the cache clock
        await asyncio.sleep(min(poll * 4, left))
    still = {str((p.get("metadata") or {}).get("uid") or "") for p in await _list_pending(ctx)}
    for raw in pending:  # those that left the list were bound (perhaps by that Binding) or deleted
        meta = raw.get("metadata") or {}
        if meta.get("uid") in candidates and meta.get("uid") not in still:
            await _read_into_cache(ctx, raw)


async def _read_into_cache(ctx: ExtenderContext, listed: dict[str, Any]) -> None:
    """Apply the pod's current state (a consistent GET) to the cache, so the model has a Binding that
    committed before the watch shows it; a pod gone (404) or re-created under its name counts as
    deleted. The watch later delivers the same state again, which changes nothing."""
    meta = listed.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    now = await until_it_works(
        f"reading pod {namespace}/{name}", lambda: ctx.binder.get_pod(namespace, name), log
    )
    if now is None or (now.get("metadata") or {}).get("uid") != meta.get("uid"):
        ctx.cache.apply_pod("DELETED", listed)
    else:
        ctx.cache.apply_pod("MODIFIED", now)
