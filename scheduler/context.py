"""Everything a verb reads or calls, in one object: the cache, the binder, the policy, memos, metrics.

Why one object passed explicitly (not module globals): tests build several independent extenders in one
process, and a verb's dependencies are visible in its signature — `verb(args, ctx) -> result`.
The memos are what makes the second call for one pod cheap: filter, prioritize, bind and preempt of a
pod see the same JSON (`requests`), prioritize follows filter on an unchanged cluster (`evaluate`), and
bind needs the Pod that filter saw (`recent_pods`; the bind arguments carry only its name and UID).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

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

Evaluation = tuple[npt.NDArray[np.int8], npt.NDArray[np.int32]]


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
    warm: bool = False
    _eval_key: tuple[object, ...] | None = None
    _eval: Evaluation | None = None

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

    def evaluate(self, req: GpuRequest) -> Evaluation:
        """placer.evaluate over all rows, reused while the request and the cluster are unchanged."""
        key = (req, self.cache.state.version, self.cache.state.n_rows)
        if key != self._eval_key or self._eval is None:
            self._eval = placer.evaluate(self.cache.state, req)
            self._eval_key = key
        return self._eval
