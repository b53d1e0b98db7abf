"""Each verb as a plain function over an ExtenderContext (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from scheduler.binder import ApiError, ConflictError, MemoryBinder, NotSentError
from scheduler.context import ExtenderContext
from scheduler.policy import scoring_function
from scheduler.verbs.bind import bind, sweep
from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import normalise, prioritize
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of

ALL = ["h0", "h1", "v0", "a0", "c0"]


def args(p: dict[str, Any], names: list[str] = ALL) -> ExtenderArgs:
    return ExtenderArgs.model_validate(o.extender_args(p, names=names))


def bind_args(p: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = p["metadata"]
    return ExtenderBindingArgs.model_validate(
        {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}
    )


def test_filter_splits_resolvable_from_unresolvable(cluster: ExtenderContext) -> None:
    r = filter_nodes(args(o.pod("p", gpus=4), [*ALL, "ghost"]), cluster).to_wire()
    assert r.node_names == ["h1", "v0", "a0"]
    assert r.failed_nodes == {"h0": "needs 4 free GPUs; 2 free here"}
    assert set(r.failed_and_unresolvable_nodes) == {"c0", "ghost"}
    assert r.error == ""
    assert orjson.loads(filter_nodes(args(o.pod("p", gpus=4)), cluster).encode())["Nodes"] is None


def test_filter_models_mig_nvlink(cluster: ExtenderContext) -> None:
    r = filter_nodes(args(o.pod("p", mig="3g.40gb")), cluster).to_wire()
    assert r.node_names == ["a0"] and "MIG 3g.40gb" in r.failed_and_unresolvable_nodes["h1"]
    r = filter_nodes(
        args(o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-models": "V100-32GB"})), cluster
    ).to_wire()
    assert (
        r.node_names == ["v0"]
        and r.failed_and_unresolvable_nodes["h1"] == "GPU model is not one of V100-32GB"
    )
    r = filter_nodes(
        args(o.pod("p", gpus=8, annotations={"gpuplace.io/nvlink": "required"})), cluster
    ).to_wire()
    assert r.node_names == ["h1", "v0"]  # DGX-1's cube-mesh is one NVLink island of 8


def test_filter_bad_pod_is_an_in_band_error(cluster: ExtenderContext) -> None:
    r = filter_nodes(args(o.pod("p", gpus=1, annotations={"gpuplace.io/gpu-milli": "x"})), cluster).to_wire()
    assert "gpu-milli" in r.error and r.node_names is None


def test_filter_full_nodes_mode_takes_node_facts_from_the_request(cluster: ExtenderContext) -> None:
    new = o.node("fresh", product="NVIDIA-L4", gpus=1, memory_mib=23034)
    a = ExtenderArgs.model_validate(o.extender_args(o.pod("p", gpus=1), nodes=[new, o.node("h0")]))
    out = filter_nodes(a, cluster)
    body = orjson.loads(out.encode())
    assert body["NodeNames"] is None and [n["metadata"]["name"] for n in body["Nodes"]["items"]] == [
        "fresh",
        "h0",
    ]


def test_prioritize_prefers_packing_and_topology(cluster: ExtenderContext) -> None:
    cluster.score = scoring_function("most-allocated", cluster.settings.topology_weight)
    r = prioritize(args(o.pod("p", gpus=2), ["h0", "h1", "c0"]), cluster).to_wire()
    scores = {h.host: h.score for h in r}
    assert scores == {
        "h0": 10,
        "h1": 2,
        "c0": 0,
    }  # proportional: h1 scores 0.25 of h0 (exact pair, full node)
    assert normalise(__import__("numpy").array([1.0, 1.0, -float("inf")])).tolist() == [10, 10, 0]


def test_prioritize_json_matches_the_model(cluster: ExtenderContext) -> None:
    out = prioritize(args(o.pod("p", gpus=1)), cluster)
    assert orjson.loads(out.encode()) == [h.model_dump(by_alias=True) for h in out.to_wire()]


async def test_bind_writes_the_record_with_the_binding_and_is_idempotent(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    events: list[dict[str, Any]] = []
    b.on_change = lambda etype, pod: (events.append(pod), cluster.cache.apply_pod(etype, pod))
    p = b.add(o.pod("p", gpus=2, annotations={"gpuplace.io/nvlink": "required"}))
    filter_nodes(args(p), cluster)
    assert (await bind(bind_args(p, "h1"), cluster)).error == ""
    assert [c[0] for c in b.calls] == ["annotate", "bind"]  # the intent (scheduler.inflight), the Binding
    stored = b.pods[("default", "p")]
    assert stored["spec"]["nodeName"] == "h1"
    assert orjson.loads(stored["metadata"]["annotations"]["gpuplace.io/gpus"])["gpus"] == [0, 1]
    assert stored["metadata"]["annotations"]["gpuplace.io/nvlink"] == "required"  # merged, not replaced
    # the record appears in the same update that binds the pod: never on an unbound pod
    assert [
        (e["spec"].get("nodeName"), "gpuplace.io/gpus" in e["metadata"]["annotations"]) for e in events
    ] == [
        (None, False),
        (None, False),  # the intent: gpuplace.io/binding only
        ("h1", True),
    ]
    assert cluster.cache.reservations == {} and cluster.cache.pods[p["metadata"]["uid"]].exact
    version = cluster.cache.state.version
    assert (await bind(bind_args(p, "h1"), cluster)).error == ""  # retried by the scheduler
    assert cluster.cache.state.version == version
    assert "already bound to h1" in (await bind(bind_args(p, "h0"), cluster)).error
    assert cluster.cache.state.check_invariants() == []


async def test_bind_failures_roll_back(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=8))
    b.fail["bind"] = ApiError(403, "forbidden by policy")  # refused: surely not written (a 5xx is not)
    r = await bind(bind_args(p, "h1"), cluster)
    assert "forbidden by policy" in r.error and cluster.cache.reservations == {}
    assert cluster.cache.state.gpu_free_milli[cluster.cache.state.index["h1"], :8].tolist() == [1000] * 8
    assert "gpuplace.io/gpus" not in b.pods[("default", "p")]["metadata"].get("annotations", {})
    del b.fail["bind"]
    assert "no longer fits" in (await bind(bind_args(p, "h0"), cluster)).error
    ghost = o.pod("ghost", gpus=1)
    assert "not found" in (await bind(bind_args(ghost, "h1"), cluster)).error
    recreated = b.add(o.pod("p2", gpus=1))
    stale = {**recreated, "metadata": {**recreated["metadata"], "uid": "old-uid"}}
    assert "re-created" in (await bind(bind_args(stale, "h1"), cluster)).error
    assert cluster.metrics.binds.labels("failed")._value.get() == 4


async def test_bind_uid_precondition_protects_a_pod_recreated_after_filter(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    old = b.add(o.pod("p", gpus=2, uid="uid-old"))
    filter_nodes(args(old), cluster)  # bind will use filter's copy of the old pod: no GET
    b.delete("default", "p")
    b.add(o.pod("p", gpus=1, uid="uid-new"))  # same name, new pod
    r = await bind(bind_args(old, "h1"), cluster)
    assert "re-created" in r.error
    new = b.pods[("default", "p")]
    assert not new["spec"].get("nodeName") and "gpuplace.io/gpus" not in new["metadata"].get(
        "annotations", {}
    )
    assert cluster.cache.reservations == {} and "uid-old" not in cluster.cache.state.allocations
    assert cluster.cache.state.gpu_free_milli[cluster.cache.state.index["h1"], :8].tolist() == [1000] * 8


async def test_bind_ignores_unrelated_changes_to_the_pending_pod(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=1))
    filter_nodes(args(p), cluster)  # remembers this resourceVersion
    b.pods[("default", "p")]["metadata"]["resourceVersion"] = "999999"  # a condition was written since
    assert (await bind(bind_args(p, "h1"), cluster)).error == ""
    assert [c[0] for c in b.calls] == ["annotate", "bind"]  # the UID is the precondition, as in DefaultBinder


def conflict_after(b: MemoryBinder, before: Callable[[], None] | None = None) -> None:
    """Make the Binding answer 409 after (optionally) letting the real one land, as a lost answer does."""
    real_bind = b.bind

    async def bind_then_conflict(
        namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        if before is None:
            await real_bind(namespace, name, uid=uid, node=node, annotations=annotations)
        else:
            before()
        raise ConflictError(409, f'pod {name} is already assigned to node "{node}"')

    b.bind = bind_then_conflict  # type: ignore[method-assign]


async def test_bind_conflict_is_success_only_with_our_record_on_that_node(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=1))
    conflict_after(b)  # our own Binding landed, the answer was a 409 (e.g. a retried request)
    assert (await bind(bind_args(p, "h1"), cluster)).error == ""
    assert cluster.cache.state.allocations[p["metadata"]["uid"]].gpus == (0,)
    assert cluster.cache.state.check_invariants() == []


async def test_bind_conflict_with_another_placement_fails_and_rolls_back(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=1))
    uid = p["metadata"]["uid"]
    other = '{"v":1,"node":"h1","gpus":[7],"milli":1000,"mig":[],"uuids":[]}'

    def bound_elsewhere_in_h1() -> None:  # e.g. an earlier, timed-out attempt of ours with other GPUs
        stored = b.pods[("default", "p")]
        stored["spec"]["nodeName"] = "h1"
        stored["metadata"].setdefault("annotations", {})["gpuplace.io/gpus"] = other

    conflict_after(b, bound_elsewhere_in_h1)
    r = await bind(bind_args(p, "h1"), cluster)
    assert "another placement" in r.error
    assert cluster.cache.reservations == {} and uid not in cluster.cache.state.allocations
    cluster.cache.apply_pod("MODIFIED", b.pods[("default", "p")])  # the watch: counted by its record
    assert cluster.cache.state.allocations[uid].gpus == (7,)

    q = b.add(o.pod("q", gpus=1))

    def bound_to_h0() -> None:
        b.pods[("default", "q")]["spec"]["nodeName"] = "h0"

    conflict_after(b, bound_to_h0)
    r = await bind(bind_args(q, "h1"), cluster)
    assert "bound to h0 meanwhile" in r.error
    assert q["metadata"]["uid"] not in cluster.cache.state.allocations
    assert cluster.cache.state.check_invariants() == []


async def test_unconfirmed_reservations_are_swept(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    b.on_change = None  # no watch: nothing confirms
    kept = b.add(o.pod("kept", gpus=1))
    lost = b.add(o.pod("lost", gpus=1))
    assert (await bind(bind_args(kept, "h1"), cluster)).error == ""
    assert (await bind(bind_args(lost, "h1"), cluster)).error == ""
    b.delete("default", "lost")
    assert await sweep(cluster) == 0  # not expired yet
    cluster.cache.clock = lambda: 1e9
    assert await sweep(cluster) == 1
    assert list(cluster.cache.reservations) == [] and kept["metadata"]["uid"] in cluster.cache.pods
    assert sum(f == 0 for f in cluster.cache.state.gpu_free_milli[cluster.cache.state.index["h1"], :8]) == 1


async def test_a_lost_answer_is_checked_before_rolling_back(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=8))
    real_bind = b.bind

    async def bind_then_timeout(
        namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        await real_bind(namespace, name, uid=uid, node=node, annotations=annotations)
        raise ApiError(0, "connection reset")  # the Binding was created; its answer was lost

    b.bind = bind_then_timeout  # type: ignore[method-assign]
    assert (await bind(bind_args(p, "h1"), cluster)).error == ""
    assert p["metadata"]["uid"] in cluster.cache.state.allocations

    async def lost_before_landing(
        namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        raise NotSentError(0, "connection refused")  # nothing was written

    q = b.add(o.pod("q", gpus=1))
    b.bind = lost_before_landing  # type: ignore[method-assign]
    assert "connection refused" in (await bind(bind_args(q, "h0"), cluster)).error
    assert q["metadata"]["uid"] not in cluster.cache.state.allocations and cluster.cache.reservations == {}


async def test_an_unknowable_outcome_keeps_the_gpus_until_the_watch_decides(cluster: ExtenderContext) -> None:
    b = binder_of(cluster)
    p = b.add(o.pod("p", gpus=2))
    b.on_change = None  # the watch has not shown the write yet
    uid = p["metadata"]["uid"]
    real_bind = b.bind

    real_get = b.get_pod
    written = False

    async def landed_but_lost(
        namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        nonlocal written
        await real_bind(namespace, name, uid=uid, node=node, annotations=annotations)
        written = True
        raise ApiError(503, "apiserver overloaded")

    async def unreadable_after_the_write(namespace: str, name: str) -> dict[str, Any] | None:
        if written:
            raise ApiError(0, "connection reset")
        return await real_get(namespace, name)

    b.bind = landed_but_lost  # type: ignore[method-assign]
    b.get_pod = unreadable_after_the_write  # type: ignore[method-assign]
    result = await bind(bind_args(p, "h1"), cluster)
    assert "is unknown; its GPUs there stay held" in result.error
    # the GPUs stay booked: nothing else may be given them while the pod may run there
    assert uid in cluster.cache.state.allocations and cluster.cache.state.check_invariants() == []
