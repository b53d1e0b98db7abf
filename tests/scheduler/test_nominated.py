"""GPUs freed for a nominated pod are not given to a lower-priority pod (scheduler.nominated), and the
PDB view preemption counts with (scheduler.disruption)."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.context import ExtenderContext
from scheduler.disruption import Disruption, parse_selector
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs, Pod
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx


def nominated(name: str, node: str, *, gpus: int, priority: int) -> dict[str, Any]:
    p = o.pod(name, gpus=gpus, priority=priority)
    p["status"]["nominatedNodeName"] = node
    return p


def setup() -> tuple[ExtenderContext, dict[str, Any]]:
    """n0 has 4 free GPUs (a foreign pod holds 4) and a pod of priority 100 nominated to it for 4;
    n1 is full."""
    ctx = make_ctx(
        [o.node("n0"), o.node("n1")],
        [
            o.pod("busy", gpus=4, node_name="n0", phase="Running"),
            o.pod("full", gpus=8, node_name="n1", phase="Running"),
        ],
    )
    nom = binder_of(ctx).add(nominated("nom", "n0", gpus=4, priority=100))
    return ctx, nom


def passes(ctx: ExtenderContext, pod: dict[str, Any]) -> list[str] | None:
    args = ExtenderArgs.model_validate(o.extender_args(pod, names=["n0", "n1"]))
    return filter_nodes(args, ctx).to_wire().node_names


def bind_args(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}
    )


def test_filter_keeps_nominated_gpus_from_lower_and_equal_priority_pods() -> None:
    """addGENominatedPods: nominated pods with priority >= the pod's count against it."""
    ctx, nom = setup()
    assert passes(ctx, o.pod("low", gpus=2, priority=0)) == []
    args = ExtenderArgs.model_validate(o.extender_args(o.pod("low", gpus=2), names=["n0", "n1"]))
    assert filter_nodes(args, ctx).to_wire().failed_nodes == {
        "n0": "needs 2 free GPUs; 0 free here, counting the GPUs held for nominated pod default/nom (priority 100)",
        "n1": "needs 2 free GPUs; 0 free here",
    }
    assert passes(ctx, o.pod("same", gpus=2, priority=100)) == []
    assert passes(ctx, o.pod("higher", gpus=2, priority=101)) == ["n0"]
    assert passes(ctx, nom) == ["n0"]  # the nominated pod does not yield to itself
    assert ctx.cache.state.check_invariants() == [] and len(ctx.cache.state.allocations) == 2


async def test_bind_refuses_a_lower_priority_pod_the_nominated_gpus() -> None:
    """A lower-priority pod that passed filter before the nomination cannot bind onto the GPUs."""
    ctx, nom = setup()
    low = binder_of(ctx).add(o.pod("low", gpus=2, priority=0))
    r = await bind(bind_args(low, "n0"), ctx)
    assert r.error.endswith("its free GPUs are held for nominated pod default/nom (priority 100)")
    assert (await bind(bind_args(nom, "n0"), ctx)).error == ""
    assert ctx.cache.state.check_invariants() == []


def test_a_nomination_ends_when_bound_cleared_or_deleted() -> None:
    ctx, nom = setup()
    b = binder_of(ctx)
    nom["status"]["nominatedNodeName"] = ""
    b.add(nom)
    assert passes(ctx, o.pod("low", gpus=2)) == ["n0"]
    nom["status"]["nominatedNodeName"] = "n0"
    b.add(nom)
    assert passes(ctx, o.pod("low", gpus=2)) == []
    b.delete("default", "nom")
    assert passes(ctx, o.pod("low", gpus=2)) == ["n0"]
    assert len(ctx.cache.nominated) == 0


def test_a_reserved_nominated_pod_is_not_counted_twice() -> None:
    """While gpuplace holds the nominated pod's bind reservation its GPUs are counted once."""
    ctx, nom = setup()
    placement = ctx.cache.guess("n0", ctx.requests.get(Pod.model_validate(nom)))
    ctx.cache.reserve(nom["metadata"]["uid"], "default", "nom", placement)
    assert passes(ctx, o.pod("higher", gpus=1, priority=101)) == []  # 0 free: the reservation holds 4
    ctx.cache.rollback(nom["metadata"]["uid"], "test")
    assert passes(ctx, o.pod("higher", gpus=4, priority=101)) == ["n0"]


def test_relist_forgets_nominations_of_pods_gone() -> None:
    ctx, _ = setup()
    ctx.cache.replace_pods([o.pod("busy", gpus=4, node_name="n0", phase="Running")], listed_at=1.0)
    assert len(ctx.cache.nominated) == 0
    assert passes(ctx, o.pod("low", gpus=2)) == ["n0", "n1"]


@pytest.mark.parametrize(
    ("selector", "labels", "match"),
    [
        (None, {"a": "1"}, False),  # nil selector: nothing
        ({}, {"a": "1"}, False),  # empty selector: nothing (upstream skips selector.Empty())
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, {"a": ""}, False),  # invalid
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {"a": "2"}, False),
    ],
)
def test_label_selectors_as_upstream_reads_them(
    selector: dict[str, Any] | None, labels: dict[str, str], match: bool
) -> None:
    sel = parse_selector(selector)
    assert (sel is not None and sel.matches(labels)) is match


def test_pdb_violation_walks_victims_in_importance_order() -> None:
    """filterPodsWithPDBViolation: one disruption allowed, three matching pods — the first keeps the
    budget, the next two violate; a pod already in disruptedPods does not spend it."""
    d = Disruption()
    d.replace_budgets(
        [
            {
                "metadata": {"namespace": "ns", "name": "b"},
                "spec": {"selector": {"matchLabels": {"app": "x"}}},
                "status": {"disruptionsAllowed": 1, "disruptedPods": {"gone": "2026-01-01T00:00:00Z"}},
            }
        ]
    )
    vs = [
        d.victim("u0", "ns", "gone", 5),
        d.victim("u1", "ns", "a", 5),
        d.victim("u2", "ns", "b", 3),
        d.victim("u3", "other", "c", 1),
    ]
    for uid in ["u0", "u1", "u2", "u3"]:
        d.observe_pod(uid, {"metadata": {"labels": {"app": "x"}}})
    vs = [d.victim(v.uid, v.namespace, v.name, v.priority) for v in vs]
    assert d.violating(vs) == [False, False, True, False]
