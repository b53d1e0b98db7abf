"""What filter must leave to kube-scheduler's own plugins, and what counts as a GPU request at all.

Each test here pins an upstream behaviour gpuplace must not second-guess (issue 9, items 4, 6 and 7).
"""

from __future__ import annotations

from typing import Any

from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx


def _args(p: dict[str, Any], names: list[str]) -> ExtenderArgs:
    return ExtenderArgs.model_validate(o.extender_args(p, names=names))


def _bind_args(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}
    )


async def test_cordoned_gpu_node_that_reached_the_extender_is_not_rejected() -> None:
    """Item 6: a node offered to the extender has passed NodeUnschedulable (the pod tolerates
    node.kubernetes.io/unschedulable, e.g. a DaemonSet pod); gpuplace places on it like on any node."""
    ctx = make_ctx([o.node("cordoned", unschedulable=True), o.node("open")])
    p = o.pod("ds", gpus=2)
    r = filter_nodes(_args(p, ["cordoned", "open"]), ctx).to_wire()
    assert r.node_names == ["cordoned", "open"], (r.failed_nodes, r.failed_and_unresolvable_nodes)
    assert not r.failed_nodes and not r.failed_and_unresolvable_nodes
    scores = {h.host: h.score for h in prioritize(_args(p, ["cordoned", "open"]), ctx).to_wire()}
    assert scores["cordoned"] == scores["open"] > 0
    binder_of(ctx).add(p)
    assert (await bind(_bind_args(p, "cordoned"), ctx)).error == ""
    assert len(ctx.cache.state.allocations[p["metadata"]["uid"]].gpus) == 2


async def test_zero_gpu_request_is_no_gpu_request() -> None:
    """Item 7: `nvidia.com/gpu: "0"` (a common chart default) names a managed resource, so kube-scheduler
    calls the extender, but the pod asks for no GPU: every offered node passes — CPU nodes and full GPU
    nodes alike — and bind places it without GPUs."""
    full = o.pod("full", gpus=8, node_name="busy", phase="Running")
    ctx = make_ctx([o.node("busy"), o.node("cpu", product="", gpus=0)], [full])
    p = o.pod("chart", gpus=0)
    p["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "0"},
        "limits": {"nvidia.com/gpu": "0"},
    }
    r = filter_nodes(_args(p, ["busy", "cpu"]), ctx).to_wire()
    assert r.error == "" and r.node_names == ["busy", "cpu"]
    assert not r.failed_nodes and not r.failed_and_unresolvable_nodes
    scores = {h.host: h.score for h in prioritize(_args(p, ["busy", "cpu"]), ctx).to_wire()}
    assert scores == {"busy": 0, "cpu": 0}  # no GPU preference: leave the ranking to the in-tree plugins
    binder_of(ctx).add(p)
    assert (await bind(_bind_args(p, "cpu"), ctx)).error == ""
    assert binder_of(ctx).pods[("default", "chart")]["spec"]["nodeName"] == "cpu"


def _sliced(name: str, replicas: int = 4) -> dict[str, Any]:
    return o.node(name, replicas=replicas)


def _share(name: str, *, node_name: str = "", milli: int = 250) -> dict[str, Any]:
    phase = "Running" if node_name else "Pending"
    return o.pod(
        name, gpus=1, node_name=node_name, phase=phase, annotations={"gpuplace.io/gpu-milli": str(milli)}
    )


def test_share_on_a_node_without_time_slicing_is_refused_with_the_reason() -> None:
    """Item 4: without time-slicing replicas the device plugin gives a `nvidia.com/gpu: 1` pod a whole GPU;
    gpuplace refuses the share there (unresolvable: no eviction makes the node time-sliced)."""
    ctx = make_ctx([o.node("plain"), _sliced("sliced"), _sliced("one-replica", replicas=1)])
    r = filter_nodes(_args(_share("s"), ["plain", "sliced", "one-replica"]), ctx).to_wire()
    assert r.node_names == ["sliced"]
    assert set(r.failed_and_unresolvable_nodes) == {"plain", "one-replica"}
    assert "not time-sliced" in r.failed_and_unresolvable_nodes["plain"]
    whole = filter_nodes(_args(o.pod("w", gpus=1), ["plain", "sliced"]), ctx).to_wire()
    assert whole.node_names == ["plain", "sliced"]


def test_shares_placed_on_an_unsliced_node_by_others_cost_whole_gpus() -> None:
    """Item 4, the scenario from the issue: 8 share pods on an 8-GPU node without time-slicing (bound by
    another scheduler, or before gpuplace ran) hold all 8 GPUs — the kubelet gave each a whole device,
    and kube-scheduler counts 8 of 8 nvidia.com/gpu — so a 4-GPU pod does not pass. Before, gpuplace
    booked 8 × 250m = 2 GPUs and passed it."""
    shares = [_share(f"s{i}", node_name="plain") for i in range(8)]
    ctx = make_ctx([o.node("plain")], shares)
    s = ctx.cache.state
    assert s.gpu_free_milli[s.index["plain"], :8].tolist() == [0] * 8
    assert not s.check_invariants()
    r = filter_nodes(_args(o.pod("big", gpus=4), ["plain"]), ctx).to_wire()
    assert r.node_names == [] and r.failed_nodes == {"plain": "needs 4 free GPUs; 0 free here"}


def test_shares_on_a_time_sliced_node_are_counted_in_milli_gpu() -> None:
    shares = [_share(f"s{i}", node_name="sliced") for i in range(8)]
    ctx = make_ctx([_sliced("sliced")], shares)
    s = ctx.cache.state
    assert sorted(s.gpu_free_milli[s.index["sliced"], :8].tolist()) == [0, 0] + [1000] * 6
    r = filter_nodes(_args(o.pod("big", gpus=4), ["sliced"]), ctx).to_wire()
    assert r.node_names == ["sliced"]
