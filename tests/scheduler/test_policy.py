"""Prioritize's normalisation and every policy as the extender runs it (issue 9 items 9 and 20).

kube-scheduler adds `score × weight × 10` per node to the in-tree plugins' 0..100 × weight scores
(pkg/scheduler/schedule_one.go, `prioritizeNodes`), so the extender's 0..10 must keep raw differences
proportional, as `DefaultNormalizeScore` does (pkg/scheduler/framework/plugins/helper/normalize_score.go):
a near-tie must stay a near-tie, or it outweighs the soft in-tree preferences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scheduler.policy import ISLAND_FIRST, POLICIES, scoring_function
from scheduler.verbs.prioritize import normalise, prioritize
from scheduler.wire import ExtenderArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

INF = float("inf")


def test_normalise_keeps_near_ties_near_and_differences_proportional() -> None:
    assert normalise(np.array([0.900, 0.901])).tolist() == [10, 10]  # min-max made this 0 vs 10
    assert normalise(np.array([0.5, 0.25, 0.0, -INF])).tolist() == [10, 5, 0, 0]
    assert normalise(np.array([0.2, 0.2])).tolist() == [10, 10]
    assert normalise(np.array([0.0, -INF])).tolist() == [0, 0]
    assert normalise(np.array([-INF, -INF])).tolist() == [0, 0]
    assert normalise(np.array([], np.float64)).tolist() == []


def _scores(ctx: Any, p: dict[str, Any], names: list[str]) -> dict[str, int]:
    a = ExtenderArgs.model_validate(o.extender_args(p, names=names))
    return {h.host: h.score for h in prioritize(a, ctx).to_wire()}


def _busy(node: str, gpus: int, name: str | None = None) -> dict[str, Any]:
    return o.pod(name or f"busy-{node}", gpus=gpus, node_name=node, phase="Running")


def _cluster(policy: str, **settings: Any) -> Any:
    """e0: empty 8-GPU H100; b6: 6 of 8 busy (a free NVLink pair); b4: 4 busy; c0: CPU only. The GPU
    nodes are time-sliced (shares are placed only there)."""
    nodes = [o.node(n, replicas=4) for n in ("e0", "b6", "b4")] + [o.node("c0", product="", gpus=0)]
    return make_ctx(nodes, [_busy("b6", 6), _busy("b4", 4)], policy=policy, **settings)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize(
    "annotations, gpus",
    [({}, 1), ({}, 2), ({"gpuplace.io/gpu-milli": "300"}, 1), ({"gpuplace.io/nvlink": "required"}, 2)],
)
def test_every_policy_gives_a_fixed_scale_score(policy: str, annotations: dict[str, str], gpus: int) -> None:
    """Raw scores are in [0, 1] on a scale that does not depend on which nodes are offered (so a
    node's score does not change when another node joins the list); infeasible nodes are −inf."""
    ctx = _cluster(policy)
    fn = scoring_function(policy, ctx.settings.topology_weight)
    p = o.pod("p", gpus=gpus, annotations=annotations)
    req = ctx.requests.get(ExtenderArgs.model_validate(o.extender_args(p, names=[])).pod)
    reason, _ = ctx.evaluate(req)
    raw = fn(ctx.cache.state, req, reason)
    feasible = reason == 0
    assert np.isneginf(raw[~feasible]).all()
    assert ((raw[feasible] >= 0) & (raw[feasible] <= 1)).all(), raw
    alone = _scores(ctx, p, ["b4"])["b4"]
    assert alone == _scores(ctx, p, ["b4", "c0"])["b4"]  # an infeasible neighbour changes nothing
    scores = _scores(ctx, p, ["e0", "b6", "b4", "c0"])
    assert scores["c0"] == 0 and all(0 <= s <= 10 for s in scores.values())
    assert max(scores.values()) == 10


def test_packing_policies_order_nodes_as_documented() -> None:
    one = o.pod("p", gpus=1)
    most = _scores(_cluster("most-allocated"), one, ["e0", "b6", "b4"])
    assert most["b6"] > most["b4"] > most["e0"]
    least = _scores(_cluster("least-allocated"), one, ["e0", "b6", "b4"])
    assert least["e0"] > least["b4"] > least["b6"]
    best = _scores(_cluster("best-fit"), one, ["e0", "b6", "b4"])
    assert best["b6"] > best["b4"] > best["e0"]


@pytest.mark.parametrize("policy", ["gpuplace", "fgd"])
def test_island_first_for_fragmentation_aware_policies(policy: str) -> None:
    """A 2-GPU pod takes the exact free pair on b6 before breaking e0's empty 8-GPU island; with
    topology_weight 0 the policy alone decides."""
    two = o.pod("p", gpus=2)
    with_topology = _scores(_cluster(policy), two, ["e0", "b6"])
    # b6: (p + ISLAND_FIRST·1) / (1 + ISLAND_FIRST) ≥ 10/11; e0: (p + ISLAND_FIRST·2/8) / (1 + ISLAND_FIRST)
    assert with_topology["b6"] == 10 and with_topology["e0"] <= 10 * (1 + ISLAND_FIRST / 4) / ISLAND_FIRST
    fn = scoring_function(policy, 0.0)
    ctx = _cluster(policy, topology_weight=0.0)
    req = ctx.requests.get(ExtenderArgs.model_validate(o.extender_args(two, names=[])).pod)
    reason, _ = ctx.evaluate(req)
    raw = fn(ctx.cache.state, req, reason)
    assert ((raw[reason == 0] >= 0) & (raw[reason == 0] <= 1)).all()  # the policy's own unit score


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="best-fit, fgd, gpuplace, least-allocated, most-allocated"):
        scoring_function("fastest", 0.5)
