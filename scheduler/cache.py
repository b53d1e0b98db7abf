"""The live cluster model: Node and Pod objects from the API server applied to a `ClusterState`.

What counts, and why:
- A pod bound to a node and not finished holds resources: exactly the GPUs of its `gpuplace.io/gpus`
  record when gpuplace bound it, else GPUs guessed by its totals, and guesses yield to exact records
  (scheduler.holdings). Pods without GPUs count their cpu/memory, so the model's cpu/memory free
  matches kube-scheduler's.
- Terminating pods (deletionTimestamp set) still hold their GPUs until they are gone — forgetting them
  overcommits the node (HAMi #1458). Succeeded/Failed/deleted pods release at once.
- A bind's reservation is an allocation under the pod's UID, made (under the node's lock) before the
  Binding is written, which carries the `gpuplace.io/gpus` record: a pod shows up bound and with its
  record in one watch event. The watch confirms the reservation when the pod shows up bound to that
  node; a failed bind rolls back only its own reservation; a deleted pod releases it; one not confirmed
  within the TTL is checked against the API (scheduler.verbs.bind.sweep) and rolled back if the pod is
  not bound there. A reservation whose Binding answer was lost (state UNKNOWN) never counts as bound
  and is kept until the watch shows the outcome or the API server's deadline for that write has surely
  passed. Nothing the scheduler assumed and never bound can leak: without a bind there is no
  reservation.
- DRA (scheduler.dra): a node described by ResourceSlices of a configured driver takes its GPUs from
  them, and what its allocated ResourceClaims hold is booked as one allocation per node
  (scheduler.dra.model). A pod whose `nvidia.com/gpu` is served by DRA (status.extendedResourceClaimStatus)
  holds its GPUs through that claim, so it counts only its cpu/memory here: never twice.
- A node carrying the node-lifecycle controller's not-ready / unreachable taint keeps its GPUs and its
  pods' allocations (they hold their GPUs until evicted), and is listed in `unavailable`: kube-scheduler's
  TaintToleration offers it only to pods that tolerate the taint, so its free GPUs are no free capacity
  (scheduler.nodeinv says why filter never rejects it itself).
- Restartable: nothing is stored elsewhere. A relist (start, or 410 Gone) replaces the whole picture;
  pods and nodes missing from the new list are forgotten, except reservations younger than the list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from placement_core import ClusterState
from scheduler.disruption import Disruption
from scheduler.dra.model import DraModel
from scheduler.dra.state import DraState
from scheduler.holdings import Holdings, PodRecord
from scheduler.listing import ListApply
from scheduler.nodeinv import NodeInventory, NodeRules, condition_taints, fingerprint, node_inventory
from scheduler.nominated import Nominations
from scheduler.podreq import Rules
from scheduler.podresources import requests_fingerprint
from scheduler.reservations import Reservation, ReservationBook, ReservationState
from scheduler.settings import SchedulerSettings
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.cache")
TERMINAL = ("Succeeded", "Failed")


class CacheHooks:
    """Counters the cache reports to; the metrics module overrides these."""

    def topology_invalid(self, node: str, message: str) -> None:
        pass

    def oversubscribed(self, node: str, uid: str) -> None:
        pass

    def reservation_rolled_back(self, why: str) -> None:
        pass


class PodObserver(Protocol):
    """Sees every pod event, pending pods included (scheduler.gang)."""

    def observe(self, etype: str, pod: dict[str, Any]) -> None: ...

    def retain(self, uids: set[str]) -> None: ...


__all__ = ["CacheHooks", "ClusterCache", "PodRecord", "Reservation", "ReservationState"]


class ClusterCache(Holdings, ReservationBook, DraModel, ListApply):
    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        hooks: CacheHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.state = ClusterState(max_gpus=settings.max_gpus_per_node, capacity=1024)
        self.node_rules = NodeRules.from_settings(settings)
        self.pod_rules = Rules.from_settings(settings)
        self.hooks = hooks or CacheHooks()
        self.clock = clock
        self.nodes: dict[str, NodeInventory] = {}
        self._node_fp: dict[str, tuple[Any, ...]] = {}
        self.unavailable: dict[str, tuple[str, ...]] = {}  # node → its not-ready/unreachable taints
        self.pods: dict[str, PodRecord] = {}
        self._by_node: dict[str, set[str]] = {}
        self.reservations: dict[str, Reservation] = {}
        self.index_gen = 0  # bumped when the name → row mapping changes
        self.synced: dict[str, bool] = {"nodes": False, "pods": False}
        self.last_event: dict[str, float] = {"nodes": 0.0, "pods": 0.0}
        self._locks: dict[str, asyncio.Lock] = {}
        self.nominated = Nominations(self.pod_rules)  # pending pods holding a node (scheduler.nominated)
        self.disruption = Disruption()  # PDBs + victim labels/start times (scheduler.disruption)
        self.pod_observer: PodObserver | None = None  # gang membership (scheduler.gang)
        self._base: dict[str, NodeInventory] = {}  # each Node object's own inventory (before DRA)
        self._live: set[str] = set()  # UIDs of pods seen and not finished (pending ones too)
        self.dra: DraState | None = None
        if settings.dra.enabled:
            self.dra = DraState(settings.dra.drivers, pod_node=self.bound_node, pod_gone=self._pod_gone)
            self.synced |= {"resourceslices": False, "resourceclaims": False}
            self.last_event |= {"resourceslices": 0.0, "resourceclaims": 0.0}

    # ---- locks ---------------------------------------------------------------------------------
    def node_lock(self, node: str) -> asyncio.Lock:
        """The per-node critical section of bind: re-validate, choose, reserve — never the API write,
        and never one global lock (HAMi #810)."""
        lock = self._locks.get(node)
        if lock is None:
            lock = self._locks[node] = asyncio.Lock()
        return lock

    @property
    def ready(self) -> bool:
        return all(self.synced.values())

    # ---- nodes ---------------------------------------------------------------------------------
    def apply_node(self, etype: str, node: dict[str, Any], *, from_watch: bool = True) -> None:
        if from_watch:
            self.last_event["nodes"] = self.clock()
        name = str((node.get("metadata") or {}).get("name") or "")
        if not name:
            return
        if etype == "DELETED":
            self._remove_node(name)
            return
        taints = condition_taints(node)
        if taints:
            self.unavailable[name] = taints
        else:
            self.unavailable.pop(name, None)
        fp = fingerprint(node, self.node_rules)
        if self._node_fp.get(name) == fp:
            return
        self._base[name] = node_inventory(node, self.node_rules)
        self._node_fp[name] = fp
        self._install(name, self._node_inventory(name))
        self._sync_dra(name)

    def _install(self, name: str, inv: NodeInventory, *, quiet: bool = False) -> None:
        """Put `inv` into the ClusterState (allocations on the node are kept and re-applied); `quiet`:
        a re-read after a DRA event, whose warnings were reported when the Node object came."""
        if inv.warning and not quiet:
            log.warning("%s", inv.warning)
            self.hooks.topology_invalid(name, inv.warning)
        new = name not in self.state.index
        try:
            self.state.upsert_node(inv.spec)
        except ValueError as e:  # nodeinv validated it; belt and braces, never crash the watch
            log.warning("node %s: %s; treating it as GPU-less", name, e)
            inv = NodeInventory(
                type(inv.spec)(name, None, [], cpu_milli=inv.spec.cpu_milli, memory_mib=inv.spec.memory_mib),
                source="none",
            )
            self.state.upsert_node(inv.spec)
        self.nodes[name] = inv
        if new:
            self.index_gen += 1
            for uid in sorted(self._by_node.get(name, ()), key=lambda u: not self.pods[u].exact):
                self._count(self.pods[uid])

    def _remove_node(self, name: str) -> None:
        if name in self.state.index:
            self.state.remove_node(name)  # drops the allocations of its pods; their records stay
            self.index_gen += 1
        self.nodes.pop(name, None)
        self._node_fp.pop(name, None)
        self._base.pop(name, None)
        self.unavailable.pop(name, None)
        for uid in [u for u, r in self.reservations.items() if r.node == name]:
            del self.reservations[uid]
        lock = self._locks.get(name)
        if lock is not None and not lock.locked():
            del self._locks[name]

    def unavailable_rows(self) -> np.ndarray:
        """A boolean mask over the state's rows: nodes tainted not-ready / unreachable."""
        mask = np.zeros(self.state.n_rows, np.bool_)
        rows = [self.state.index[n] for n in self.unavailable if n in self.state.index]
        mask[rows] = True
        return mask

    # ---- pods ----------------------------------------------------------------------------------
    def apply_pod(self, etype: str, pod: dict[str, Any]) -> None:
        self.last_event["pods"] = self.clock()
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not uid:
            return
        if self.pod_observer is not None:
            self.pod_observer.observe(etype, pod)
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if etype == "DELETED" or status.get("phase") in TERMINAL:
            self.forget_pod(uid)
            return
        self._live.add(uid)
        node = spec.get("nodeName") or ""
        self.nominated.observe(uid, pod)
        if not node:
            return  # pending: holds nothing (a bind in flight holds its reservation)
        self.disruption.observe_pod(uid, pod)
        annotations = meta.get("annotations") or {}
        fp = (  # what _record reads; a resize changes the requests of a bound pod
            node,
            annotations.get(self.pod_rules.keys.gpus),
            self.pod_rules.annotations_read(annotations),
            requests_fingerprint(pod),
            bool(status.get("extendedResourceClaimStatus")),
        )
        old = self.pods.get(uid)
        if old is not None and old.fp == fp:
            return
        self._record(Pod.model_validate(pod), fp)
        if (
            self.dra is not None
            and (spec.get("resourceClaims") or fp[-1])
            and (old is None or old.node != node)
        ):
            self.dra_changed(self.dra.rebind(uid))

    def _pod_gone(self, uid: str) -> bool:
        """Known deleted or finished: seen go, or absent from a complete pod list."""
        return self.synced["pods"] and uid not in self._live

    def forget_pod(self, uid: str) -> None:
        self._live.discard(uid)
        if self.dra is not None and self.dra.reserved(uid):
            self.dra_changed(self.dra.rebind(uid))
        self.nominated.forget(uid)
        self.disruption.forget_pod(uid)
        rec = self.pods.pop(uid, None)
        if rec is not None:
            self._by_node.get(rec.node, set()).discard(uid)
        self.reservations.pop(uid, None)
        self.state.release(uid)

    # ---- DRA objects (scheduler.dra) -------------------------------------------------------------
    def apply_slice(self, etype: str, obj: dict[str, Any]) -> None:
        assert self.dra is not None
        self.last_event["resourceslices"] = self.clock()
        self.dra_changed(self.dra.apply_slice(etype, obj), hardware=True)

    def replace_slices(self, items: Iterable[dict[str, Any]]) -> None:
        """A (re)list of the slices. The verbs' arrays are packed here, at list time (before /readyz
        on a start), rather than by the first filter after it (1 s at 5,000 nodes on a loaded machine)."""
        assert self.dra is not None
        self.dra_changed(self.dra.replace_slices(items), hardware=True)
        self.synced["resourceslices"] = True
        self.dra.packed()

    def apply_claim(self, etype: str, obj: dict[str, Any]) -> None:
        assert self.dra is not None
        self.last_event["resourceclaims"] = self.clock()
        self.dra_changed(self.dra.apply_claim(etype, obj))

    def replace_claims(self, items: Iterable[dict[str, Any]]) -> None:
        assert self.dra is not None
        self.dra_changed(self.dra.replace_claims(items))
        self.synced["resourceclaims"] = True
        self.dra.packed()
