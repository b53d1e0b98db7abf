"""bench/upper_bound.py: the pods it calls forced are placed by every policy, its bound is above what every
policy allocates, and the arrival order is what makes it non-trivial (a hand-worked case)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.upper_bound import bound, forced_mask, node_types, prefix, prefix_classes
from gpuplace.simulate.engine import (
    Cluster,
    PodArrays,
    arrivals,
    policy_context,
    run_seed,
    trace_typical_pods,
)
from gpuplace.simulate.traces import NodeTable, PodTable
from placement_core.policies import Context, Policy

WHOLE = 1000


def _nodes(spec: list[tuple[int, int, int, str]]) -> NodeTable:
    """(GPUs, cores, GiB, model) per node."""
    return NodeTable(
        names=tuple(f"n{i}" for i in range(len(spec))),
        cpu_milli=np.array([c * 1000 for _, c, _, _ in spec], np.int64),
        memory_mib=np.array([m * 1024 for _, _, m, _ in spec], np.int64),
        gpus=np.array([g for g, _, _, _ in spec], np.int32),
        models=tuple(model for *_, model in spec),
    )


def _pods(spec: list[tuple[int, int, int, int]]) -> PodTable:
    """(cores, GiB, GPUs, milli per GPU) per pod."""
    return PodTable(
        names=tuple(f"p{i:04d}" for i in range(len(spec))),
        cpu_milli=np.array([c * 1000 for c, _, _, _ in spec], np.int64),
        memory_mib=np.array([m * 1024 for _, m, _, _ in spec], np.int64),
        gpu_count=np.array([g for _, _, g, _ in spec], np.int32),
        gpu_milli=np.array([s for *_, s in spec], np.int32),
        models=(None,) * len(spec),
        creation=None,
        deletion=None,
    )


def _random_workload(rng: np.random.Generator, n: int) -> PodTable:
    shapes = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.1:
            shapes.append((int(rng.integers(1, 16)), int(rng.integers(1, 64)), 0, 0))  # CPU-only
        elif kind < 0.5:
            shapes.append((int(rng.integers(1, 12)), int(rng.integers(1, 48)), 1,
                           int(rng.choice([110, 230, 320, 470, 650, 810]))))
        else:
            g = int(rng.choice([1, 1, 1, 2, 4, 8]))
            shapes.append((g * int(rng.integers(2, 14)), g * int(rng.integers(4, 64)), g, WHOLE))
    return _pods(shapes)


CLUSTER = _nodes([(8, 96, 512, "G2")] * 3 + [(4, 48, 256, "V100")] * 2 + [(2, 32, 128, "T4")] * 3
                 + [(1, 16, 64, "T4")] * 4)


@pytest.mark.parametrize("seed", range(6))
def test_forced_pods_are_placed_and_the_bound_holds_for_every_policy(seed: int) -> None:
    pods = _random_workload(np.random.default_rng(100 + seed), 120)
    capacity = CLUSTER.total_gpus * WHOLE
    types = node_types(CLUSTER)
    seq = prefix(pods, capacity, seed, 130)
    forced = forced_mask(types, pods, seq)
    classes = prefix_classes(pods, seq, forced)
    limit = bound(types, classes, use_forced=True)
    assert forced.any()
    cluster = Cluster.from_table(CLUSTER)
    arrays = PodArrays.build(pods, cluster.model_names)
    metric = Context.build(trace_typical_pods(pods), cluster.model_names, cluster.gpu_present, cluster.node_cpu_total)
    for policy in Policy:
        rng = np.random.default_rng(seed)
        events = arrivals(pods, capacity, 1.3, rng)
        assert np.array_equal(events.pod[: len(seq)], seq)
        run = run_seed(policy, cluster, arrays, policy_context(policy, cluster, pods), metric, events, rng=rng)
        unplaced = [int(k) for k in np.nonzero(forced & (run.node[: len(seq)] < 0))[0]]
        assert not unplaced, f"{policy.label} left forced arrivals {unplaced} unplaced"
        allocated = float(run.used_milli[len(seq)])
        assert allocated <= limit + 1e-6, f"{policy.label} allocated {allocated} above the bound {limit}"


def test_early_big_shares_strand_their_remnants() -> None:
    """One 8-GPU node. Eight 810-milli shares arrive first, then eight whole GPUs. Offline one would take the
    whole GPUs (8,000 milli); a policy must bind each share (nothing can block the node yet), and each leaves
    190 milli only a share ≤ 190 could use: at most 8 × 810 = 6,480 milli."""
    nodes = _nodes([(8, 128, 1024, "G2")])
    pods = _pods([(2, 4, 1, 810)] * 8 + [(4, 16, 1, WHOLE)] * 8)
    types = node_types(nodes)
    seq = np.arange(len(pods))
    forced = forced_mask(types, pods, seq)
    assert forced[:8].all()
    classes = prefix_classes(pods, seq, forced)
    assert bound(types, classes, use_forced=False) == pytest.approx(8 * WHOLE)
    assert bound(types, classes, use_forced=True) == pytest.approx(8 * 810)
