"""What a bound pod holds in the cluster model's ClusterState: its exact record, or a guess.

If the pod carries `gpuplace.io/gpus` (gpuplace bound it), it holds exactly those GPUs. A GPU pod bound
by anyone else holds GPUs by its totals; which ones is guessed (the choice placer would make, else the
emptiest), and guesses yield to exact records: when an exact record collides with a guess, the node's
guesses are re-made around it. A guess keeps its GPUs when the pod's requests are read again (a resize,
or the kubelet first reporting the containers' resources: only cpu/memory change; re-guessing while the
pod holds its GPUs would move it onto someone else's). Pods without GPUs count their cpu/memory.
`Holdings` is mixed into scheduler.cache.ClusterCache, which feeds it the watched pods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from placement_core import ClusterState, DoubleBookingError, GpuRequest, Placement, placer
from scheduler.contract import Record, RecordError, decode_record
from scheduler.podreq import PodRequestError, Rules, pod_request
from scheduler.wire import Pod

if TYPE_CHECKING:
    from scheduler.cache import CacheHooks
    from scheduler.dra.state import DraState
    from scheduler.reservations import Reservation

log = logging.getLogger("gpuplace.scheduler.cache")


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


def _same_devices(p: Placement, node: str, req: GpuRequest) -> bool:
    """`p` is a placement of `req`'s GPUs on `node` (the devices a pod asks for cannot be resized: only
    cpu and memory can, so a guess stays put when a bound pod's requests are read again)."""
    if p.node != node:
        return False
    if req.mig_profile is not None:
        return not p.gpus and len(p.mig) == req.count
    return not p.mig and p.milli == req.milli and len(p.gpus) == (1 if req.is_share else req.count)


class Holdings:
    """The pod-accounting methods of ClusterCache (which provides these attributes)."""

    state: ClusterState
    pod_rules: Rules
    hooks: CacheHooks
    dra: DraState | None
    pods: dict[str, PodRecord]
    _by_node: dict[str, set[str]]
    reservations: dict[str, Reservation]

    def guess(self, node: str, req: GpuRequest) -> Placement:
        """Where `req` would go on `node` now: placer's choice, else the emptiest GPUs (may oversubscribe)."""
        return placer.choose(self.state, node, req) or self._emptiest(node, req)

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
