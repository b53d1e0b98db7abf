"""Requeue the pods kube-scheduler tried while gpuplace could not answer, once it can.

A pod whose filter call failed — gpuplace down (connection refused), or up but not ready yet ("gpuplace
is not ready") — is parked by kube-scheduler as unschedulable. It is retried on a node add/update, on
the deletion of an assigned pod, or on an update of the pod itself; otherwise only by the periodic
flush of unschedulable pods, up to 5 minutes later (pkg/scheduler/backend/queue/scheduling_queue.go,
`flushUnschedulablePodsLeftover`, `podMaxInUnschedulablePodsDuration`; kubernetes #127290). gpuplace
becoming ready is no event kube-scheduler sees. So, once it answers verbs after a start or a takeover,
gpuplace writes `gpuplace.io/requeue` on each unbound pod whose PodScheduled condition records such a
failure: an update of the pod itself, which moves it back to the active queue within its backoff
(pkg/scheduler/eventhandlers.go, `updatePodInSchedulingQueue` → `SchedulingQueue.Update`).

Only those pods are touched: one whose last failure was a real rejection is retried by the events
that can change its verdict, as before. Writes go out a few at a time, after the verbs are answered.
A pod refused just before readiness whose condition kube-scheduler writes after this list is missed
and waits for the flush, as every such pod did before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("gpuplace.scheduler.requeue")
ANNOTATION = "gpuplace.io/requeue"
NOT_READY = "gpuplace is not ready"
Patch = Callable[[str, str, dict[str, str]], Awaitable[None]]


def refused_while_unavailable(pod: dict[str, Any], extender_paths: tuple[str, ...] = ("/filter",)) -> bool:
    """Did kube-scheduler's last attempt fail because gpuplace could not answer? Its PodScheduled
    condition is False with gpuplace's not-ready answer, or with a failed POST to an extender's filter
    (the Go HTTP client's error: `Post "https://…/filter": dial tcp …: connection refused`)."""
    if (pod.get("spec") or {}).get("nodeName") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") != "PodScheduled" or cond.get("status") != "False":
            continue
        message = str(cond.get("message") or "")
        if NOT_READY in message:
            return True
        return message.startswith('Post "') and any(f'{path}": ' in message for path in extender_paths)
    return False


async def requeue(pending: list[dict[str, Any]], patch: Patch, *, concurrency: int = 8) -> int:
    """Write the requeue annotation on every pod in `pending` that `refused_while_unavailable`; returns
    how many writes succeeded. A failed write is logged and skipped: the flush still retries that pod."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    targets = [p["metadata"] for p in pending if refused_while_unavailable(p)]
    gate = asyncio.Semaphore(concurrency)

    async def one(meta: dict[str, Any]) -> bool:
        async with gate:
            try:
                await patch(str(meta.get("namespace")), str(meta.get("name")), {ANNOTATION: stamp})
                return True
            except Exception as e:  # the pod may be gone; the API may refuse: nothing is lost
                log.info("requeue of %s/%s failed: %r", meta.get("namespace"), meta.get("name"), e)
                return False

    done = sum(await asyncio.gather(*(one(m) for m in targets)))
    if targets:
        log.info(
            "requeued %d of %d pods kube-scheduler tried while gpuplace could not answer", done, len(targets)
        )
    return done
