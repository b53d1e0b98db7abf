"""Nominated pods: GPUs that preemption freed for a pod (status.nominatedNodeName) are not given away.

kube-scheduler nominates a preemptor to the node whose victims it evicted and, in v1.36, also nominates
pods entering Permit or PreBind (NominatedNodeNameForExpectation, beta and on: gang and DRA pods). Until
such a pod is bound, its in-tree filters count it on that node for every pod of lower or equal
priority: `RunFilterPluginsWithNominatedPods` / `addGENominatedPods` in
pkg/scheduler/framework/runtime/framework.go add the nominated pods with priority >= the pod's (and
another UID) to the node before filtering. gpuplace mirrors that in filter, bind and preempt: each
such pod is placed (placer.choose, else on the emptiest GPUs like any pod gpuplace cannot place, which
may oversubscribe) for the duration of one check, with no await in between, and released again.

What counts as nominated here: a pod with `status.nominatedNodeName` set and no `spec.nodeName`, not
being deleted, that requests GPUs. It stops counting when it is bound (kube-apiserver clears the field
on binding, ClearingNominatedNodeNameAfterBinding, beta and on since 1.35), when the field is cleared
or changed, when it is deleted, or while gpuplace holds a bind reservation for it (then its GPUs are
counted by the reservation already).

Known difference: a pod nominated for expectation (Permit/PreBind) is an assumed pod in kube-scheduler,
which counts it against every pod, not only lower-priority ones. gpuplace cannot tell the two kinds of
nomination apart and applies the priority rule to both; kube-scheduler's own count filter still keeps
the GPU total right, and a topology conflict shows up as a failed bind that kube-scheduler retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from placement_core import GpuRequest, placer
from scheduler.podreq import PodRequestError, Rules, pod_request
from scheduler.wire import Pod

if TYPE_CHECKING:
    from scheduler.cache import ClusterCache

log = logging.getLogger("gpuplace.scheduler.nominated")


@dataclass(frozen=True, slots=True)
class Nominated:
    uid: str
    namespace: str
    name: str
    node: str
    priority: int
    req: GpuRequest
    rv: str = ""  # resourceVersion it was read at (an unchanged pod is not parsed again)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Nominations:
    """Pending pods nominated to a node, by UID and by node (fed by ClusterCache.apply_pod)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._by_uid: dict[str, Nominated] = {}
        self._by_node: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def observe(self, uid: str, pod: dict[str, Any]) -> None:
        """Any event of an unfinished pod: track it while it is nominated and unbound."""
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        node = str(status.get("nominatedNodeName") or "")
        if not node or spec.get("nodeName") or meta.get("deletionTimestamp"):
            self.forget(uid)
            return
        old = self._by_uid.get(uid)
        rv = str(meta.get("resourceVersion") or "")
        if old is not None and rv and old.rv == rv:
            return
        parsed = Pod.model_validate(pod)
        try:
            req = pod_request(parsed, self.rules)
        except PodRequestError:
            self.forget(uid)  # filter fails it with the reason; it can hold nothing
            return
        if req.count == 0:
            self.forget(uid)
            return
        self.forget(uid)
        self._by_uid[uid] = Nominated(
            uid, parsed.metadata.namespace, parsed.metadata.name, node, parsed.spec.priority, req, rv
        )
        self._by_node.setdefault(node, set()).add(uid)

    def forget(self, uid: str) -> None:
        old = self._by_uid.pop(uid, None)
        if old is not None:
            on = self._by_node.get(old.node)
            if on is not None:
                on.discard(uid)
                if not on:
                    del self._by_node[old.node]

    def retain(self, uids: set[str]) -> None:
        """After a relist: forget the pods the new list does not have."""
        for uid in [u for u in self._by_uid if u not in uids]:
            self.forget(uid)

    def against(self, uid: str, priority: int, node: str) -> list[Nominated]:
        """The pods a pod (`uid`, `priority`) must leave room for on `node`, most important first."""
        out = [
            p for u in self._by_node.get(node, ()) if u != uid and (p := self._by_uid[u]).priority >= priority
        ]
        out.sort(key=lambda p: (-p.priority, p.uid))
        return out

    def nodes_against(self, uid: str, priority: int) -> dict[str, list[Nominated]]:
        if not self._by_uid:
            return {}
        out = {}
        for node in self._by_node:
            held = self.against(uid, priority, node)
            if held:
                out[node] = held
        return out


@contextmanager
def holding(cache: ClusterCache, pods: Sequence[Nominated]) -> Iterator[None]:
    """Count `pods` as placed on their nominated nodes inside the block. Synchronous use only: no
    await may happen inside, so no other coroutine ever sees the virtual allocations.

    A pod already in the state is skipped: reserved or bound by gpuplace, or a gang member whose plan
    holds its GPUs (scheduler.gang.holds). kube-scheduler nominates gang members whose attempts failed,
    and counting such a member's nomination on top of its hold refused every sibling's bind."""
    from scheduler.gang.holds import hold_uid  # scheduler.gang imports the cache, which imports this

    state, taken = cache.state, []
    try:
        for p in pods:
            if p.uid in state.allocations or hold_uid(p.uid) in state.allocations or p.node not in state.index:
                continue  # counted already
            key = f"nominated/{p.uid}"
            state.allocate(key, cache.guess(p.node, p.req), check=False)
            taken.append(key)
        yield
    finally:
        for key in taken:
            state.release(key)


def refilter(
    cache: ClusterCache,
    req: GpuRequest,
    pod: Pod,
    rows: npt.NDArray[np.int64],
    reason: npt.NDArray[np.int8],
    detail: npt.NDArray[np.int64],
) -> dict[str, list[Nominated]]:
    """Re-evaluate, in place, the passing offered rows whose node holds nominated pods the pod must
    yield to; returns the nodes that fail only because of them. Rejected rows stay as they are: more
    usage cannot make them pass."""
    blocked: dict[str, list[Nominated]] = {}
    for node, held in cache.nominated.nodes_against(pod.metadata.uid, pod.spec.priority).items():
        row = cache.state.index.get(node)
        if row is None:
            continue
        at = np.nonzero(rows == row)[0]
        if not len(at) or reason[at[0]] != 0:
            continue
        with holding(cache, held):
            r, d = placer.evaluate(cache.state, req, rows=slice(row, row + 1))
        if r[0] != 0:
            log.debug("%s: %s yields to nominated %s", node, pod.key, ", ".join(p.key for p in held))
            blocked[node] = held
        reason[at] = r[0]
        detail[at] = d[0]
    return blocked


def explain_blocked(failed_json: bytes, blocked: dict[str, list[Nominated]]) -> bytes:
    """FailedNodes with the nominated pods named on the nodes that fail only because of them (a rare
    path: the map is decoded and encoded again)."""
    failed = orjson.loads(failed_json)
    for node, held in blocked.items():
        if node in failed:
            failed[node] = f"{failed[node]}, counting the GPUs held for nominated {_names(held)}"
    return orjson.dumps(failed)


def _names(held: Sequence[Nominated]) -> str:
    return ", ".join(f"pod {p.key} (priority {p.priority})" for p in held)


def describe(held: Sequence[Nominated]) -> str:
    return f"its free GPUs are held for nominated {_names(held)}"
