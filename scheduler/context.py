"""Everything a verb reads or calls, in one object: the cache, the binder, the policy, memos, metrics.

Why one object passed explicitly (not module globals): tests build several independent extenders in one
process, and a verb's dependencies are visible in its signature — `verb(args, ctx) -> result`.
The memos are what makes the second call for one pod cheap: filter, prioritize, bind and preempt of a
pod see the same JSON (`requests`), prioritize follows filter on an unchanged cluster (`evaluate`,
`scores`), and bind needs the Pod that filter saw (`recent_pods`; the bind arguments carry only its name
and UID). The evaluation memo is keyed by the request and the cluster's version, not by the pod: with
several pods in flight kube-scheduler interleaves their filter and prioritize calls, and pods of one
shape (a Deployment's replicas) share one evaluation until the cluster changes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from placement_core import GpuRequest, placer
from scheduler.binder import Binder
from scheduler.cache import ClusterCache
from scheduler.gang import GangManager, MemoryPlanStore, PlanStore
from scheduler.metrics import Metrics
from scheduler.namelists import NameLists
from scheduler.podreq import RequestMemo, Rules
from scheduler.policy import ScoreFn, scoring_function
from scheduler.settings import SchedulerSettings
from scheduler.wire import ExtenderBindingResult, Pod

T = TypeVar("T")
Evaluation = tuple[npt.NDArray[np.int8], npt.NDArray[np.int32]]


class EvalMemo:
    """Bounded LRU of per-row results by (request, cluster version, rows); size 0 turns it off.

    Sound because every result is a pure function of the request and the ClusterState, and the state's
    `version` moves on every change to it (placement_core.cluster). Callers must not mutate the arrays."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.hits = 0
        self._d: OrderedDict[tuple[object, ...], object] = OrderedDict()

    def get(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        if self.size <= 0:
            return compute()
        hit = self._d.get(key)
        if hit is None:
            hit = compute()
            self._d[key] = hit
            if len(self._d) > self.size:
                self._d.popitem(last=False)
        else:
            self._d.move_to_end(key)
            self.hits += 1
        return hit  # type: ignore[return-value]


class PodMemo:
    """Bounded LRU of the Pods filter saw, by UID (bind's source for the pod's request)."""

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._d: OrderedDict[str, Pod] = OrderedDict()

    def put(self, pod: Pod) -> None:
        uid = pod.metadata.uid
        if uid:
            self._d[uid] = pod
            self._d.move_to_end(uid)
            if len(self._d) > self._size:
                self._d.popitem(last=False)

    def get(self, uid: str) -> Pod | None:
        return self._d.get(uid)


@dataclass
class ExtenderContext:
    settings: SchedulerSettings
    cache: ClusterCache
    binder: Binder
    metrics: Metrics
    score: ScoreFn
    requests: RequestMemo
    names: NameLists = field(default_factory=NameLists)
    recent_pods: PodMemo = field(default_factory=PodMemo)
    gangs: GangManager | None = None
    binds_inflight: dict[str, tuple[str, asyncio.Future[ExtenderBindingResult]]] = field(default_factory=dict)
    memo: EvalMemo = field(default_factory=EvalMemo)
    warm: bool = False

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
    def ready(self) -> bool:
        return self.warm and self.cache.ready  # the watches start after the gang plans are loaded

    def _key(self, what: str, req: GpuRequest) -> tuple[object, ...]:
        state = self.cache.state
        return (what, req, state, state.version, state.n_rows)

    def evaluate(self, req: GpuRequest) -> Evaluation:
        """placer.evaluate over all rows, reused while the request and the cluster are unchanged."""
        return self.memo.get(self._key("evaluate", req), lambda: placer.evaluate(self.cache.state, req))

    def scores(self, req: GpuRequest) -> npt.NDArray[np.float64]:
        """The policy's raw score per row (scheduler.policy), memoised like `evaluate`."""

        def compute() -> npt.NDArray[np.float64]:
            return self.score(self.cache.state, req, self.evaluate(req)[0])

        return self.memo.get(self._key("scores", req), compute)
