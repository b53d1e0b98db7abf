"""Trace replay: place pods one by one on the cluster arrays with a placement_core policy.

One seed runs entirely inside `_replay` (Numba): per arriving pod, score every node, take the best (equal
scores go to the node with the lowest random rank — FGD's reference simulator names nodes with a random
prefix and takes the lexicographically smallest), commit CPU, memory and GPUs, and record the cluster's
allocated GPU milli and fragmentation after the event. gpuplace's reserve of empty 8-GPU nodes
(`placement_core.policies.reserve_plan`) is applied at selection time, outside the cache. Fragmentation is always *reported* against FGD's
typical pods of the trace (so every policy is measured alike, as in the paper), whatever distribution the
policy itself scores with.

Speed: a node's score for a pod depends only on that node's state and on the pod's *class* (its CPU,
memory, GPU count, GPU milli and model constraint), and each event changes one node. So scores are cached
per (class, node) and stamped with the node's version; only nodes changed since the class was last scored
are recomputed. The node fragmentation sum is kept incrementally the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from gpuplace.simulate.gpuset import connected_set, first_free, openb_links
from gpuplace.simulate.traces import NodeTable, PodTable
from placement_core.fragmentation import node_frag
from placement_core.islands import largest_island
from placement_core.policies import (
    RESERVE_PENALTY,
    Context,
    Policy,
    is_empty_big,
    node_score,
    random_gpu,
    reserve_plan,
)
from placement_core.request import WHOLE
from placement_core.workload import PodShape, TypicalPods, typical_pods

NEG_INF = -np.inf


@dataclass(frozen=True, slots=True)
class Cluster:
    """The simulator's cluster arrays (same layout as placement_core.cluster.ClusterState)."""

    names: tuple[str, ...]
    model_names: tuple[str, ...]
    gpu_free_milli: npt.NDArray[np.int32]  # [N, G]
    gpu_present: npt.NDArray[np.bool_]  # [N, G]
    node_cpu_free: npt.NDArray[np.int64]
    node_mem_free: npt.NDArray[np.int64]
    node_cpu_total: npt.NDArray[np.int64]
    node_mem_total: npt.NDArray[np.int64]
    node_model: npt.NDArray[np.int32]
    links: npt.NDArray[np.uint8]  # [N, G, G]

    @property
    def capacity_milli(self) -> int:
        return int(self.gpu_present.sum()) * WHOLE

    @classmethod
    def from_table(cls, t: NodeTable) -> Cluster:
        n = len(t)
        G = max(1, int(t.gpus.max()))
        models = t.model_names()
        mid = {m: i for i, m in enumerate(models)}
        present = np.arange(G)[None, :] < t.gpus[:, None]
        links = np.zeros((n, G, G), np.uint8)
        for i in range(n):
            k = int(t.gpus[i])
            links[i, :k, :k] = openb_links(t.models[i], k)
        return cls(
            names=t.names, model_names=tuple(models),
            gpu_free_milli=np.where(present, WHOLE, 0).astype(np.int32), gpu_present=present,
            node_cpu_free=t.cpu_milli.copy(), node_mem_free=t.memory_mib.copy(),
            node_cpu_total=t.cpu_milli.copy(), node_mem_total=t.memory_mib.copy(),
            node_model=np.array([mid.get(m, -1) for m in t.models], np.int32), links=links,
        )

    def fresh(self) -> Cluster:
        """A copy with nothing allocated (the mutable arrays are copied)."""
        return Cluster(self.names, self.model_names, np.where(self.gpu_present, WHOLE, 0).astype(np.int32),
                       self.gpu_present, self.node_cpu_total.copy(), self.node_mem_total.copy(),
                       self.node_cpu_total, self.node_mem_total, self.node_model, self.links)


@dataclass(frozen=True, slots=True)
class PodArrays:
    """Pods compiled for the kernels: requests, model masks and class ids (equal request ⇒ equal class)."""

    cpu: npt.NDArray[np.int64]
    mem: npt.NDArray[np.int64]
    count: npt.NDArray[np.int32]
    milli: npt.NDArray[np.int32]
    allowed: npt.NDArray[np.bool_]  # [P, M+1]
    klass: npt.NDArray[np.int32]
    n_classes: int

    @classmethod
    def build(cls, pods: PodTable, model_names: tuple[str, ...]) -> PodArrays:
        M = len(model_names) + 1
        allowed = np.ones((len(pods), M), np.bool_)
        keys: dict[tuple[object, ...], int] = {}
        klass = np.empty(len(pods), np.int32)
        for i, models in enumerate(pods.models):
            if models is not None:
                allowed[i, :] = False
                for m, name in enumerate(model_names):
                    allowed[i, m] = name in models
            key = (int(pods.cpu_milli[i]), int(pods.memory_mib[i]), int(pods.gpu_count[i]),
                   int(pods.gpu_milli[i]), models)
            klass[i] = keys.setdefault(key, len(keys))
        return cls(pods.cpu_milli, pods.memory_mib, pods.gpu_count, pods.gpu_milli, allowed, klass, len(keys))


def trace_typical_pods(pods: PodTable, *, with_memory: bool = False) -> TypicalPods:
    """Typical pods of a trace (the paper derives them from the workload being replayed); FGD's rule with
    `with_memory=False`, gpuplace's memory-aware form with True."""
    return typical_pods(
        (PodShape(int(c), int(n), int(m), mo, int(me)) for c, n, m, mo, me in
         zip(pods.cpu_milli, pods.gpu_count, pods.gpu_milli, pods.models, pods.memory_mib, strict=True)),
        with_memory=with_memory,
    )


def policy_context(policy: Policy, cluster: Cluster, pods: PodTable, *, quantize: bool | None = None) -> Context:
    """The scoring context a policy gets in the simulator: gpuplace scores with the memory-aware typical
    pods of the trace and exact scores; published policies use FGD's typical pods and, by default, the
    integer scores of their reference implementation."""
    gp = policy == Policy.GPUPLACE
    tp = trace_typical_pods(pods, with_memory=gp)
    return Context.build(tp, cluster.model_names, cluster.gpu_present, cluster.node_cpu_total,
                         quantize=(not gp) if quantize is None else quantize)


@dataclass(frozen=True, slots=True)
class Events:
    """What happens, in order: event e is pod `pod[e]` arriving (or leaving when `delete[e]`)."""

    pod: npt.NDArray[np.int64]
    delete: npt.NDArray[np.bool_]
    instances: int  # number of pod instances (arrivals)
    inst_of_event: npt.NDArray[np.int64]
    inst_pod: npt.NDArray[np.int64]  # the pod (row of the trace) each instance is


def arrivals(pods: PodTable, capacity_milli: int, arrival: float, rng: np.random.Generator) -> Events:
    """FGD's workload for one seed: shuffle the pods, then sample more (with replacement) until one more
    would push requested GPU past `arrival` × capacity, or drop random ones while it is above."""
    by_name = np.argsort(np.array(pods.names), kind="stable")
    order = list(by_name[rng.permutation(len(by_name))])
    req = pods.gpu_milli_total
    total = int(req[order].sum())
    target = arrival * capacity_milli
    if total > target:
        while total > target and order:
            k = int(rng.integers(len(order)))
            total -= int(req[order.pop(k)])
    else:
        while True:
            k = int(by_name[int(rng.integers(len(by_name)))])
            if total + int(req[k]) > target:
                break
            order.append(k)
            total += int(req[k])
    seq = np.array(order, np.int64)
    return Events(seq, np.zeros(len(seq), np.bool_), len(seq), np.arange(len(seq), dtype=np.int64), seq)


def timeline(pods: PodTable) -> Events:
    """Creation and deletion events in time order (`--departures`); creation first on equal times."""
    if pods.creation is None or pods.deletion is None:
        raise ValueError("this pod list has no creation_time/deletion_time columns; --departures needs them")
    n = len(pods)
    times = np.concatenate([pods.creation, pods.deletion])
    is_del = np.concatenate([np.zeros(n, np.bool_), np.ones(n, np.bool_)])
    pod = np.concatenate([np.arange(n), np.arange(n)])
    seq = np.concatenate([2 * np.arange(n), 2 * np.arange(n) + 1])
    keep = ~is_del | (pods.deletion[pod] >= 0)
    idx = np.lexsort((seq[keep], times[keep]))
    return Events(pod[keep][idx], is_del[keep][idx], n, pod[keep][idx], np.arange(n, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class SeedRun:
    """Per-event series (index 0 = before the first event) and per-instance placements of one seed."""

    used_milli: npt.NDArray[np.int64]
    frag_milli: npt.NDArray[np.float64]
    arrived_milli: npt.NDArray[np.int64]
    failed: npt.NDArray[np.bool_]  # per event: an arrival that found no node
    node: npt.NDArray[np.int32]  # per instance: where it was placed, −1 = never
    nvl_hw: npt.NDArray[np.bool_]  # per instance: the node has an NVLink island ≥ its GPU count
    nvl_possible: npt.NDArray[np.bool_]  # … and had a free one when the pod was placed
    nvl_in: npt.NDArray[np.bool_]  # … and the pod's GPUs form one island


def run_seed(policy: Policy, cluster: Cluster, pods: PodArrays, ctx: Context, metric: Context, events: Events, *,
             rng: np.random.Generator, topology_aware: bool | None = None) -> SeedRun:
    """Replay `events` on a fresh copy of `cluster`; `metric` holds the typical pods fragmentation is reported
    against. Whole-GPU sets are NVLink-aware for gpuplace (or as `topology_aware` says); the published
    baselines take the lowest-index free GPUs as their reference implementation does."""
    c = cluster.fresh()
    N = len(c.names)
    E = len(events.pod)
    node_rank = rng.permutation(N).astype(np.int64)
    u_pick = rng.random(E)
    u_gpu = rng.random(E)
    topo = policy == Policy.GPUPLACE if topology_aware is None else topology_aware
    used = np.zeros(E + 1, np.int64)
    frag = np.zeros(E + 1, np.float64)
    arrived = np.zeros(E + 1, np.int64)
    failed = np.zeros(E, np.bool_)
    node = np.full(events.instances, -1, np.int32)
    mask = np.zeros(events.instances, np.int64)
    nvl = np.zeros((3, events.instances), np.bool_)
    kinds = np.zeros((N, c.gpu_present.shape[1] + 1), np.int32)
    node_class, class_reserve = reserve_plan(ctx.big_jobs if policy == Policy.GPUPLACE else (), c.gpu_present,
                                             c.node_cpu_total, c.node_mem_total, c.node_model, ctx.big_gpus)
    _replay(int(policy), ctx.quantize, topo, c.gpu_free_milli, c.gpu_present, c.node_cpu_free, c.node_mem_free,
            c.node_cpu_total, c.node_mem_total, c.node_model, kinds, c.links, node_rank,
            events.pod, events.delete, events.inst_of_event, pods.cpu, pods.mem, pods.count, pods.milli,
            pods.allowed, pods.klass, pods.n_classes, u_pick, u_gpu, *ctx.typical_args(), ctx.max_cpu,
            ctx.max_gpu_milli, node_class, class_reserve, ctx.big_gpus,
            *metric.typical_args(), used, frag, arrived, failed, node, mask, nvl)
    return SeedRun(used, frag, arrived, failed, node, nvl[0], nvl[1], nvl[2])


@njit(cache=True, nogil=True)
def _place(b, i, sg, topo, gpu_free, gpu_present, links, count, milli, chosen):  # type: ignore[no-untyped-def]
    """Take the GPUs for pod i on node b; returns the GPU bitmask."""
    G = gpu_free.shape[1]
    if count == 0:
        return 0
    if milli < WHOLE:
        gpu_free[b, sg] -= milli
        return 1 << sg
    if topo:
        connected_set(gpu_free[b], gpu_present[b], links[b], count, chosen)
    else:
        first_free(gpu_free[b], gpu_present[b], count, chosen)
    bits = 0
    for g in range(G):
        if chosen[g]:
            gpu_free[b, g] -= WHOLE
            bits |= 1 << g
    return bits


@njit(cache=True, nogil=True)
def _replay(policy, quantize, topo, gpu_free, gpu_present, cpu_free, mem_free, cpu_total, mem_total,  # type: ignore[no-untyped-def]
            node_model, kinds, links, node_rank, ev_pod, ev_del, ev_inst, p_cpu, p_mem, p_count, p_milli,
            p_allowed, p_class, n_classes, u_pick, u_gpu, tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed,
            tp_weight, max_cpu, max_gpu_milli, node_class, class_reserve, big_gpus, m_cpu, m_mem, m_count, m_milli, m_allowed,
            m_weight, out_used, out_frag, out_arrived, out_failed, inst_node, inst_mask, nvl):
    N, G = gpu_free.shape
    node_f = np.empty(N, np.float64)  # against the policy's typical pods (FGD, gpuplace use it)
    metric_f = np.empty(N, np.float64)  # against FGD's typical pods of the trace (reported)
    empty_big = np.zeros(N, np.bool_)
    frag_sum = 0.0
    for n in range(N):
        node_f[n] = node_frag(gpu_free[n], gpu_present[n], cpu_free[n], mem_free[n], node_model[n], tp_cpu, tp_mem,
                              tp_count, tp_milli, tp_allowed, tp_weight)
        metric_f[n] = node_frag(gpu_free[n], gpu_present[n], cpu_free[n], mem_free[n], node_model[n], m_cpu, m_mem,
                                m_count, m_milli, m_allowed, m_weight)
        frag_sum += metric_f[n]
        empty_big[n] = is_empty_big(gpu_free[n], gpu_present[n], cpu_free[n], cpu_total[n], big_gpus)
    class_empty = np.zeros(class_reserve.shape[0], np.int64)
    for n in range(N):
        if empty_big[n] and node_class[n] >= 0:
            class_empty[node_class[n]] += 1
    order = np.argsort(node_rank)
    version = np.zeros(N, np.int32)
    cache_ver = np.full((n_classes, N), -1, np.int32)
    cache_score = np.empty((n_classes, N), np.float64)
    cache_gpu = np.empty((n_classes, N), np.int32)
    chosen = np.zeros(G, np.bool_)
    hw = np.zeros(G, np.bool_)
    used = 0
    arrived = 0
    out_frag[0] = frag_sum
    for e in range(ev_pod.shape[0]):
        i = ev_pod[e]
        k = ev_inst[e]
        cpu, mem, count, milli = p_cpu[i], p_mem[i], p_count[i], p_milli[i]
        kind = 0 if milli < WHOLE else min(count, kinds.shape[1] - 1)
        b = -1
        if ev_del[e]:
            b = inst_node[k]
            if b >= 0:
                for g in range(G):
                    if (inst_mask[k] >> g) & 1:
                        gpu_free[b, g] += milli
                cpu_free[b] += cpu
                mem_free[b] += mem
                if count > 0:
                    kinds[b, kind] -= 1
                used -= count * milli
        else:
            arrived += count * milli
            sg = -1
            if policy == 0:  # RANDOM: a uniform pick among the feasible nodes (feasibility cached per class)
                c = p_class[i]
                feasible = 0
                for n in range(N):
                    if cache_ver[c, n] != version[n]:
                        s, _ = node_score(0, gpu_free[n], gpu_present[n], cpu_free[n], mem_free[n], cpu_total[n],
                                          mem_total[n], node_model[n], kinds[n], 0.0, cpu, mem, count, milli,
                                          p_allowed[i], tp_cpu, tp_mem, tp_count, tp_milli, tp_allowed, tp_weight,
                                          max_cpu, max_gpu_milli, quantize, 0.5)
                        cache_score[c, n] = s
                        cache_ver[c, n] = version[n]
                    if cache_score[c, n] > NEG_INF:
                        feasible += 1
                if feasible > 0:
                    pick = min(int(u_pick[e] * feasible), feasible - 1)
                    for r in range(N):
                        n = order[r]
                        if cache_score[c, n] > NEG_INF:
                            if pick == 0:
                                b = n
                                break
                            pick -= 1
                    if count == 1 and milli < WHOLE:
                        sg = random_gpu(gpu_free[b], gpu_present[b], milli, u_gpu[e])
            else:
                c = p_class[i]
                best = NEG_INF
                reserve = count < big_gpus
                for n in range(N):
                    if cache_ver[c, n] != version[n]:
                        s, g = node_score(policy, gpu_free[n], gpu_present[n], cpu_free[n], mem_free[n],
                                          cpu_total[n], mem_total[n], node_model[n], kinds[n], node_f[n], cpu,
                                          mem, count, milli, p_allowed[i], tp_cpu, tp_mem, tp_count, tp_milli,
                                          tp_allowed, tp_weight, max_cpu, max_gpu_milli, quantize, 0.0)
                        cache_score[c, n] = s
                        cache_gpu[c, n] = g
                        cache_ver[c, n] = version[n]
                    s = cache_score[c, n]
                    k_n = node_class[n]
                    if reserve and empty_big[n] and s > NEG_INF and k_n >= 0 and \
                            class_empty[k_n] <= class_reserve[k_n]:
                        s -= RESERVE_PENALTY
                    if s > best or (s == best and s > NEG_INF and node_rank[n] < node_rank[b]):
                        best = s
                        b = n
                if b >= 0:
                    sg = cache_gpu[c, b]
            if b < 0:
                out_failed[e] = True
            else:
                if count >= 2:
                    for g in range(G):
                        hw[g] = gpu_present[b, g]
                        chosen[g] = gpu_present[b, g] and gpu_free[b, g] >= WHOLE
                    nvl[0, k] = largest_island(links[b], hw) >= count
                    nvl[1, k] = largest_island(links[b], chosen) >= count
                bits = _place(b, i, sg, topo, gpu_free, gpu_present, links, count, milli, chosen)
                if count >= 2:
                    for g in range(G):
                        chosen[g] = (bits >> g) & 1 == 1
                    nvl[2, k] = largest_island(links[b], chosen) == count
                inst_node[k] = b
                inst_mask[k] = bits
                cpu_free[b] -= cpu
                mem_free[b] -= mem
                if count > 0:
                    kinds[b, kind] += 1
                used += count * milli
        if b >= 0:
            version[b] += 1
            node_f[b] = node_frag(gpu_free[b], gpu_present[b], cpu_free[b], mem_free[b], node_model[b], tp_cpu,
                                  tp_mem, tp_count, tp_milli, tp_allowed, tp_weight)
            f = node_frag(gpu_free[b], gpu_present[b], cpu_free[b], mem_free[b], node_model[b], m_cpu, m_mem,
                          m_count, m_milli, m_allowed, m_weight)
            frag_sum += f - metric_f[b]
            metric_f[b] = f
            e_big = is_empty_big(gpu_free[b], gpu_present[b], cpu_free[b], cpu_total[b], big_gpus)
            if node_class[b] >= 0:
                class_empty[node_class[b]] += int(e_big) - int(empty_big[b])
            empty_big[b] = e_big
        out_used[e + 1] = used
        out_frag[e + 1] = frag_sum
        out_arrived[e + 1] = arrived
