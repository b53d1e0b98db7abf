"""Prometheus metrics of the extender and of the cluster as gpuplace sees it.

Why a registry per service (not the global one): tests build many apps in one process, and the global
registry refuses a second metric of the same name. Cluster gauges (GPUs per model and node, stranded
GPUs) are computed from the ClusterState arrays at scrape time, at most every `refresh_seconds`, in a
few vectorised passes — never on the filter hot path. Per-node series are exported only while the
cluster has at most `per_node_max_nodes` GPU nodes, so a 5,000-node cluster does not emit 10,000
series per scrape.

"Stranded" GPUs: free (healthy, unallocated) GPU capacity on nodes where none of the configured common
request shapes fits right now — e.g. free GPUs behind exhausted CPU, or scattered fractional leftovers.

"Unavailable" GPUs: free capacity on nodes tainted `node.kubernetes.io/not-ready` / `unreachable` (the
node-lifecycle controller's taints, which kube-scheduler's TaintToleration filter keeps most pods away
from; scheduler.nodeinv). Neither free nor stranded: a NotReady node is not capacity the cluster can use.
What its pods hold stays `allocated` until they are evicted.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from placement_core import WHOLE, GpuRequest, NvlinkNeed, Reason, placer
from scheduler.cache import CacheHooks, ClusterCache
from scheduler.settings import MetricsSettings

BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLUGS = {int(r): r.slug for r in Reason}


class Metrics(CacheHooks):
    def __init__(
        self, settings: MetricsSettings | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings or MetricsSettings()
        self.registry = r = registry or CollectorRegistry()
        self.latency = Histogram(
            "gpuplace_extender_request_seconds",
            "Extender request latency by verb",
            ["verb"],
            buckets=BUCKETS,
            registry=r,
        )
        self.bad_requests = Counter(
            "gpuplace_extender_bad_requests_total", "Malformed requests (HTTP 4xx)", ["verb"], registry=r
        )
        self.errors = Counter(
            "gpuplace_extender_errors_total",
            "Verb failures (in-band Error or HTTP 500)",
            ["verb"],
            registry=r,
        )
        self.rejections = Counter(
            "gpuplace_filter_rejections_total", "Nodes rejected by filter, by reason", ["reason"], registry=r
        )
        self.binds = Counter("gpuplace_binds_total", "Bind outcomes", ["result"], registry=r)
        self.rollbacks = Counter(
            "gpuplace_reservations_rolled_back_total",
            "Reservations released without a confirmed bind",
            ["why"],
            registry=r,
        )
        self.topology_invalid_total = Counter(
            "gpuplace_topology_annotation_invalid_total",
            "Node inventories read with a warning (bad topology annotation or labels); presets used instead",
            registry=r,
        )
        self.oversubscribed_total = Counter(
            "gpuplace_oversubscribed_pods_total",
            "Pods found holding GPUs that were already taken (placed outside gpuplace)",
            registry=r,
        )
        self.watch_restarts = Counter(
            "gpuplace_watch_restarts_total", "Watch restarts", ["kind", "why"], registry=r
        )
        self.gpus = Gauge(
            "gpuplace_gpus",
            "GPUs by model and state (allocated, free, unavailable: free on a NotReady node, unhealthy); MIG "
            "GPUs count by used memory slices",
            ["model", "state"],
            registry=r,
        )
        self.node_gpus = Gauge(
            "gpuplace_node_gpus",
            "GPUs per node and state (only for clusters up to per_node_max_nodes GPU nodes)",
            ["node", "model", "state"],
            registry=r,
        )
        self.stranded = Gauge(
            "gpuplace_stranded_gpus",
            "Free GPUs on nodes where no common request shape fits",
            ["model"],
            registry=r,
        )
        self.cache_age = Gauge(
            "gpuplace_cache_event_age_seconds", "Seconds since the last watch event", ["kind"], registry=r
        )
        self.synced = Gauge(
            "gpuplace_cache_synced", "1 once the first full list is applied", ["kind"], registry=r
        )
        self.reservations = Gauge(
            "gpuplace_reservations", "Bind reservations not yet confirmed by the watch", registry=r
        )
        self.nominated = Gauge(
            "gpuplace_nominated_pods", "Pending pods whose nominated node holds GPUs for them", registry=r
        )
        self.budgets = Gauge(
            "gpuplace_disruption_budgets", "PodDisruptionBudgets preempt counts violations with", registry=r
        )
        self.gangs = Gauge(
            "gpuplace_gangs",
            "Gangs by state: waiting (quorum or capacity missing), planned (holding, none bound), "
            "binding (some members bound, plan open)",
            ["state"],
            registry=r,
        )
        self.gang_gpus_reserved = Gauge(
            "gpuplace_gang_reserved_gpus", "GPUs held by gang plans for members not bound yet", registry=r
        )
        self.gang_bind_seconds = Histogram(
            "gpuplace_gang_time_to_full_bind_seconds",
            "From a gang's plan to its last planned member bound",
            buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300),
            registry=r,
        )
        self.gang_releases = Counter(
            "gpuplace_gang_plans_released_total", "Gang plans released before completing", ["why"], registry=r
        )
        self._refreshed = -1e18
        # Series that exist at 0 from the start, so rates and the chart's alerts (deploy/helm/gpuplace/
        # files/alerts.yaml) see them before the first error instead of "no data" (Prometheus'
        # instrumentation practice: initialise the label values you know).
        # the per-call series' children, looked up once (`labels()` costs a lock and a dict per call)
        self.verb_latency = {verb: self.latency.labels(verb) for verb in ("filter", "prioritize", "bind", "preempt")}
        for verb in self.verb_latency:
            self.errors.labels(verb)
        self._rejected: dict[int, Counter] = {}
        for result in ("ok", "failed"):
            self.binds.labels(result)
        for kind in ("nodes", "pods"):
            for why in ("gone", "error"):
                self.watch_restarts.labels(kind, why)

    # ---- CacheHooks ---------------------------------------------------------------------------------
    def topology_invalid(self, node: str, message: str) -> None:
        self.topology_invalid_total.inc()

    def oversubscribed(self, node: str, uid: str) -> None:
        self.oversubscribed_total.inc()

    def reservation_rolled_back(self, why: str) -> None:
        self.rollbacks.labels(why).inc()

    # ---- gang hooks (scheduler.gang.manager) ---------------------------------------------------------
    def gang_bound(self, seconds: float) -> None:
        self.gang_bind_seconds.observe(seconds)

    def gang_released(self, why: str) -> None:
        self.gang_releases.labels(why).inc()

    def refresh_gangs(self, counts: dict[str, int], reserved_gpus: float) -> None:
        for state in ("waiting", "planned", "binding"):
            self.gangs.labels(state).set(counts.get(state, 0))
        self.gang_gpus_reserved.set(reserved_gpus)

    # ---- hot-path helpers ----------------------------------------------------------------------------
    def count_rejections(self, reasons: npt.NDArray[np.int8]) -> None:
        """One increment per reason present (bincount, not one per node)."""
        counts = np.bincount(reasons.astype(np.int64), minlength=len(_SLUGS)).tolist()
        for code, n in enumerate(counts):
            if code and n:
                child = self._rejected.get(code)
                if child is None:
                    child = self._rejected[code] = self.rejections.labels(_SLUGS.get(code, "unknown"))
                child.inc(n)

    # ---- scrape-time cluster gauges --------------------------------------------------------------------
    def refresh(self, cache: ClusterCache, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._refreshed < self.settings.refresh_seconds:
            return
        self._refreshed = now
        for kind, t in cache.last_event.items():
            self.cache_age.labels(kind).set(cache.clock() - t if t else float("nan"))
            self.synced.labels(kind).set(1.0 if cache.synced[kind] else 0.0)
        self.reservations.set(len(cache.reservations))
        self.nominated.set(len(cache.nominated))
        self.budgets.set(len(cache.disruption.budgets))
        s = cache.state
        n = s.n_rows
        if n == 0:
            return
        present = s.gpu_present[:n]
        healthy = present & s.gpu_healthy[:n]
        plain = healthy & ~s.gpu_mig[:n]
        free_plain = np.where(plain, np.clip(s.gpu_free_milli[:n], 0, WHOLE), 0).sum(axis=1) / WHOLE
        mig_slices = (s.mig_size[:n] * (s.mig_profile[:n] >= 0)).sum(axis=2)
        mig_used = (s.mig_size[:n] * s.mig_used[:n]).sum(axis=2)
        mig_gpu = healthy & s.gpu_mig[:n]
        mig_free = np.where(mig_gpu & (mig_slices > 0), 1 - mig_used / np.maximum(mig_slices, 1), 0).sum(
            axis=1
        )
        total = healthy.sum(axis=1)
        off = cache.unavailable_rows()
        idle = free_plain + mig_free
        allocated = total - idle
        free = np.where(off, 0.0, idle)
        unavailable = np.where(off, idle, 0.0)
        unhealthy = (present & ~s.gpu_healthy[:n]).sum(axis=1)
        stranded = np.where(self._nothing_fits(cache) & ~off, free_plain, 0.0)
        model = s.node_model[:n]
        gpu_rows = np.nonzero(s.node_valid[:n] & (model >= 0))[0]
        names = s.models.names
        self.gpus.clear()
        self.stranded.clear()
        for mid, mname in enumerate(names):
            rows = gpu_rows[model[gpu_rows] == mid]
            if not len(rows):
                continue
            self.gpus.labels(mname, "allocated").set(float(allocated[rows].sum()))
            self.gpus.labels(mname, "free").set(float(free[rows].sum()))
            self.gpus.labels(mname, "unavailable").set(float(unavailable[rows].sum()))
            self.gpus.labels(mname, "unhealthy").set(float(unhealthy[rows].sum()))
            self.stranded.labels(mname).set(float(stranded[rows].sum()))
        self.node_gpus.clear()
        if len(gpu_rows) <= self.settings.per_node_max_nodes:
            for i in gpu_rows:
                node, mname = s.names[i], names[model[i]]
                self.node_gpus.labels(node, mname, "allocated").set(float(allocated[i]))
                self.node_gpus.labels(node, mname, "free").set(float(free[i]))
                self.node_gpus.labels(node, mname, "unavailable").set(float(unavailable[i]))

    def _nothing_fits(self, cache: ClusterCache) -> npt.NDArray[np.bool_]:
        s = cache.state
        fits = np.zeros(s.n_rows, np.bool_)
        for shape in self.settings.stranded_shapes:
            req = GpuRequest(
                count=shape.count,
                milli=shape.milli,
                cpu_milli=shape.cpu_milli,
                memory_mib=shape.memory_mib,
                nvlink=NvlinkNeed.REQUIRED if shape.nvlink_required else NvlinkNeed.NONE,
            )
            reason, _ = placer.evaluate(s, req)
            fits |= reason == 0
        return ~fits
