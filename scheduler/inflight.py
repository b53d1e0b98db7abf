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
from scheduler.podreq import PodRequestError
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


async def hold_inherited(ctx: ExtenderContext, *, since: float) -> int:
    """Reserve the GPUs of every unbound pod carrying an intent (none of this process's own: it has
    bound nothing yet) as UNKNOWN until its Binding's deadline counted from `since`. Returns how many."""
    cache, keys = ctx.cache, ctx.requests.rules.keys
    held = 0
    for raw in await ctx.binder.pending_pods():
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
    delay = 0.2
    while True:
        try:
            n = await hold_inherited(ctx, since=since)
            break
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(
                "listing unbound pods for binds still in flight failed: %r; retrying in %.1fs", e, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    if n:
        log.warning("holding the GPUs of %d pods whose Binding a previous process may still commit", n)
    ctx.inherited = True
