"""The live cluster model: Node and Pod objects from the API server applied to a `ClusterState`.

What counts, and why:
- A pod bound to a node and not finished holds resources. If it carries `gpuplace.io/gpus` (gpuplace
  bound it), it holds exactly those GPUs. A GPU pod bound by anyone else holds GPUs by its totals; which
  ones is guessed (the choice placer would make, else the emptiest), and guesses yield to exact records:
  when an exact record collides with a guess, the node's guesses are re-made around it. A guess keeps
  its GPUs when the pod's requests are read again (a resize, or the kubelet first reporting the
  containers' resources: only cpu/memory change; re-guessing while the pod holds its GPUs would move
  it onto someone else's). Pods without
  GPUs count their cpu/memory, so the model's cpu/memory free matches kube-scheduler's.
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
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from placement_core import ClusterState, DoubleBookingError, GpuRequest, Placement, placer
from scheduler.contract import Record, RecordError, decode_record
from scheduler.disruption import Disruption
from scheduler.dra.model import DraModel
from scheduler.dra.state import DraState
from scheduler.listing import ListApply
from scheduler.nodeinv import NodeInventory, NodeRules, condition_taints, fingerprint, node_inventory
from scheduler.nominated import Nominations
from scheduler.podreq import PodRequestError, Rules, pod_request
from scheduler.podresources import requests_fingerprint
from scheduler.reservations import Reservation, ReservationBook, ReservationState
from scheduler.settings import SchedulerSettings
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.cache")
TERMINAL = ("Succeeded", "Failed")


@dataclass(slots=True)
class PodRecord:
    uid: str
    namespace: str
    name: str
    node: str
    priority: int
    fp: tuple[Any, ...]
    req: GpuRequest | None  # None: unreadable request, counted as nothing
    record: Record | None  # the gpuplace.io/gpus record, when gpuplace placed it

    @property
    def exact(self) -> bool:
        return self.record is not None and self.record.node == self.node


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


def _same_devices(p: Placement, node: str, req: GpuRequest) -> bool:
    """`p` is a placement of `req`'s GPUs on `node` (the devices a pod asks for cannot be resized: only
    cpu and memory can, so a guess stays put when a bound pod's requests are read again)."""
    if p.node != node:
        return False
    if req.mig_profile is not None:
        return not p.gpus and len(p.mig) == req.count
    return not p.mig and p.milli == req.milli and len(p.gpus) == (1 if req.is_share else req.count)


__all__ = ["CacheHooks", "ClusterCache", "PodRecord", "Reservation", "ReservationState"]


class ClusterCache(ReservationBook, DraModel, ListApply):
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

    def _record(self, pod: Pod, fp: tuple[Any, ...]) -> None:
        uid, node = pod.metadata.uid, pod.spec.node_name
        req = self._bound_request(pod)
        record = None
        raw = pod.metadata.annotations.get(self.pod_rules.keys.gpus)
        if self.dra is not None and pod.status.extended_resource_claim_status is not None and req is not None:
            req, raw = replace(req, count=0, milli=1000, mig_profile=None), None  # its claim holds the GPUs
        elif self.dra is not None and pod.spec.resource_claims:
            raw = None  # claims hold its DRA GPUs; bind's record of them is for people, not for counting
        if raw:
            try:
                record = decode_record(raw)
            except RecordError as e:
                log.warning(
                    "pod %s: unreadable %s (%s); counting it by totals", pod.key, self.pod_rules.keys.gpus, e
                )
        old = self.pods.get(uid)
        if old is not None and old.node != node:
            self._by_node.get(old.node, set()).discard(uid)
        rec = PodRecord(
            uid, pod.metadata.namespace, pod.metadata.name, node, pod.spec.priority, fp, req, record
        )
        self.pods[uid] = rec
        self._by_node.setdefault(node, set()).add(uid)
        self._count(rec)

    def _bound_request(self, pod: Pod) -> GpuRequest | None:
        """What a bound pod holds. Its devices are the kubelet's whatever gpuplace's annotations say:
        when one of them is unreadable (another scheduler bound it) the pod counts by its resources
        alone; only a request that cannot be read even so counts as nothing."""
        try:
            return pod_request(pod, self.pod_rules)
        except PodRequestError as e:
            k = self.pod_rules.keys
            read = (k.gpu_milli, k.gpu_models, k.gpu_memory_mib, k.nvlink)
            plain = {a: v for a, v in pod.metadata.annotations.items() if a not in read}
            bare = pod.model_copy(update={"metadata": pod.metadata.model_copy(update={"annotations": plain})})
            try:
                req = pod_request(bare, self.pod_rules)
            except PodRequestError:
                log.warning("pod %s: %s; counting no resources for it", pod.key, e)
                return None
            log.warning("pod %s: %s; counting it by its resources alone", pod.key, e)
            return req

    def _count(self, rec: PodRecord) -> None:
        """Make the state hold what `rec` says (idempotent)."""
        if rec.node not in self.state.index:
            return  # the node is not known yet; counted when it arrives
        res = self.reservations.get(rec.uid)
        if res is not None:
            if res.node == rec.node:  # the watch confirms our own bind
                del self.reservations[rec.uid]
                if (
                    rec.exact
                    and rec.record is not None
                    and self.state.allocations.get(rec.uid) == res.placement
                ):
                    return
            else:
                log.warning(
                    "pod %s/%s reserved on %s is bound to %s", rec.namespace, rec.name, res.node, rec.node
                )
                del self.reservations[rec.uid]
        placement = self._placement(rec)
        current = self.state.allocations.get(rec.uid)
        if current == placement:
            return
        if current is not None:
            self.state.release(rec.uid)
        try:
            self.state.allocate(rec.uid, placement)
        except DoubleBookingError:
            if rec.exact and self._regroup_guesses(rec.node, rec.uid, placement):
                return
            self.state.allocate(rec.uid, placement, check=False)
            log.warning(
                "pod %s/%s on %s oversubscribes it (%s)",
                rec.namespace,
                rec.name,
                rec.node,
                "exact record" if rec.exact else "counted by totals",
            )
            self.hooks.oversubscribed(rec.node, rec.uid)

    def _placement(self, rec: PodRecord) -> Placement:
        cpu = rec.req.cpu_milli if rec.req else 0
        mem = rec.req.memory_mib if rec.req else 0
        if rec.exact and rec.record is not None:
            return rec.record.placement(cpu, mem)
        if rec.req is None or rec.req.count == 0:
            return Placement(node=rec.node, cpu_milli=cpu, memory_mib=mem)
        current = self.state.allocations.get(rec.uid)
        if current is not None and _same_devices(current, rec.node, rec.req):
            return replace(current, cpu_milli=cpu, memory_mib=mem)  # re-read requests: keep its guess
        return placer.choose(self.state, rec.node, rec.req) or self._emptiest(rec.node, rec.req)

    def _emptiest(self, node: str, req: GpuRequest) -> Placement:
        """Guess for a foreign pod that does not fit by the model: the emptiest GPUs (oversubscribes)."""
        s, i = self.state, self.state.index[node]
        base = {"node": node, "cpu_milli": req.cpu_milli, "memory_mib": req.memory_mib}
        if req.mig_profile is not None:
            pid = s.mig_names.ids.get(req.mig_profile.replace("+", "."), -2)
            slots = sorted(
                (bool(s.mig_used[i, g, k]), g, k)
                for g in range(s.G)
                for k in range(s.mig_profile.shape[2])
                if s.mig_profile[i, g, k] == pid
            )
            return Placement(mig=tuple((g, k) for _, g, k in slots[: req.count]), **base)  # type: ignore[arg-type]
        plain = [g for g in range(s.G) if s.gpu_present[i, g] and not s.gpu_mig[i, g]]
        plain.sort(key=lambda g: (-int(s.gpu_free_milli[i, g]), g))
        take = plain[:1] if req.is_share else plain[: req.count]
        return Placement(gpus=tuple(sorted(take)), milli=req.milli, **base)  # type: ignore[arg-type]

    def _regroup_guesses(self, node: str, uid: str, exact: Placement) -> bool:
        """Release the node's guessed placements, commit the exact one, re-guess the rest."""
        guessed = [
            u
            for u in self._by_node.get(node, ())
            if u != uid
            and u in self.state.allocations
            and not self.pods[u].exact
            and (self.pods[u].req or GpuRequest(count=0)).count > 0
        ]
        for u in guessed:
            self.state.release(u)
        try:
            self.state.allocate(uid, exact)
        except DoubleBookingError:
            ok = False
        else:
            ok = True
        for u in guessed:
            p = self._placement(self.pods[u])
            self.state.allocate(u, p, check=False)
        return ok

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

    def guess(self, node: str, req: GpuRequest) -> Placement:
        """Where `req` would go on `node` now: placer's choice, else the emptiest GPUs (may oversubscribe)."""
        return placer.choose(self.state, node, req) or self._emptiest(node, req)
