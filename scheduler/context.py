"""Everything a verb reads or calls, in one object: the cache, the binder, the policy, memos, metrics.

Why one object passed explicitly (not module globals): tests build several independent extenders in one
process, and a verb's dependencies are visible in its signature — `verb(args, ctx) -> result`.
The memos are what makes the second call for one pod cheap: filter, prioritize, bind and preempt of a
pod see the same JSON (`requests`), prioritize follows filter on an unchanged cluster (`evaluate`,
`scores`), and bind needs the Pod that filter saw (`recent_pods`; the bind arguments carry only its name
and UID). The evaluation memo is keyed by the request, not by the pod: with several pods in flight
kube-scheduler interleaves their filter and prioritize calls, pods of one shape (a Deployment's replicas)
share one evaluation, and when the cluster changed only the changed rows are evaluated again
(scheduler.memo).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from placement_core import GpuRequest, placer
from scheduler.binder import Binder
from scheduler.cache import ClusterCache
from scheduler.failmaps import Answers
from scheduler.gang import GangManager, MemoryPlanStore, PlanStore
from scheduler.memo import LRU, EvalMemo, PodMemo, RowMemo
from scheduler.metrics import Metrics
from scheduler.namelists import NameLists
from scheduler.podreq import RequestMemo, Rules
from scheduler.policy import Scoring, scoring_function
from scheduler.settings import SchedulerSettings
from scheduler.wire import ExtenderBindingResult

Evaluation = tuple[npt.NDArray[np.int8], npt.NDArray[np.int32]]


@dataclass
class ExtenderContext:
    settings: SchedulerSettings
    cache: ClusterCache
    binder: Binder
    metrics: Metrics
    score: Scoring
    requests: RequestMemo
    names: NameLists = field(default_factory=NameLists)
    recent_pods: PodMemo = field(default_factory=PodMemo)
    gangs: GangManager | None = None
    binds_inflight: dict[str, tuple[str, asyncio.Future[ExtenderBindingResult]]] = field(default_factory=dict)
    memo: EvalMemo = field(default_factory=EvalMemo)
    rows: RowMemo = field(default_factory=RowMemo)
    answers: Answers = field(default_factory=Answers)
    bodies: LRU[bytes, Any] = field(default_factory=lambda: LRU(64))
    warm: bool = False
    inherited: bool = False  # what a previous process may still bind is held (scheduler.inflight)

    @classmethod
    def build(
        cls,
        settings: SchedulerSettings,
        binder: Binder,
        *,
        cache: ClusterCache | None = None,
        metrics: Metrics | None = None,
        plan_store: PlanStore | None = None,
    ) -> ExtenderContext:
        metrics = metrics or Metrics(settings.metrics)
        cache = cache or ClusterCache(settings, hooks=metrics)
        gangs = None
        if settings.gang.enabled:
            gangs = GangManager(
                settings.gang,
                cache,
                plan_store or MemoryPlanStore(),
                nudge=getattr(binder, "patch_pod_annotations", None),
                hooks=metrics,
                is_leader=getattr(getattr(binder, "role", None), "is_leader", None),  # LeaderBinder
            )
            cache.pod_observer = gangs
        return cls(
            settings,
            cache,
            binder,
            metrics,
            scoring_function(settings.policy, settings.topology_weight),
            RequestMemo(Rules.from_settings(settings)),
            gangs=gangs,
        )

    @property
    def synced(self) -> bool:
        """Cache synced and kernels warm: a replica may stand for election (scheduler.leader.campaign)."""
        return self.warm and self.cache.ready  # the watches start after the gang plans are loaded

    @property
    def ready(self) -> bool:
        """May answer the verbs: synced, and the binds a predecessor may have in flight are held."""
        return self.synced and self.inherited

    def waiting(self, *, leading: bool = True) -> list[str]:
        """What readiness still waits for, in words (/readyz and the not-ready answers); a follower
        takes over only once it leads, so that step is not listed for it."""
        what = [k for k, v in self.cache.synced.items() if not v] + ([] if self.warm else ["kernels"])
        if leading and not self.inherited:
            what.append("binds a previous process may have in flight")
        return what

    def evaluate(self, req: GpuRequest) -> Evaluation:
        """placer.evaluate over all rows, redone only for the rows changed since the last call for an
        equal request (scheduler.memo.RowMemo)."""
        state = self.cache.state

        def compute(rows: npt.NDArray[np.intp] | None) -> Evaluation:
            return placer.evaluate(state, req, rows=rows)

        return self.rows.get(("evaluate", req), state, compute)  # type: ignore[return-value]

    def scores(self, req: GpuRequest) -> npt.NDArray[np.float64]:
        """The policy's raw score per row (scheduler.policy): its per-row part kept like `evaluate`, the
        finish over all rows memoised by state version."""
        state = self.cache.state
        reason = self.evaluate(req)[0]

        def local(rows: npt.NDArray[np.intp] | None) -> tuple[npt.NDArray[np.float64], ...]:
            return self.score.local(state, req, reason, rows)

        def compute() -> npt.NDArray[np.float64]:
            return self.score.finish(state, req, reason, self.rows.get(("local", req), state, local))

        return self.memo.get(("scores", req, state, state.version, state.n_rows), compute)
