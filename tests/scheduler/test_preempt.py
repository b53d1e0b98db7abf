"""The preempt verb against kube-scheduler v1.36.3's reading of the answer (scheduler.verbs.preempt)."""

from __future__ import annotations

from typing import Any

from placement_core import Placement
from scheduler.context import ExtenderContext
from scheduler.contract import encode_record
from scheduler.verbs.preempt import preempt
from scheduler.wire import ExtenderPreemptionArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

PAIR = {"gpuplace.io/nvlink": "required"}


def pairs_node(name: str = "p0") -> dict[str, Any]:
    """8x A40 with NVLink bridges joining 0-1, 2-3, 4-5, 6-7."""
    return o.node(
        name, product="NVIDIA-A40", memory_mib=46068, labels={"nvidia.com/gpu.machine": "A40-8x-bridged"}
    )


def placed(
    name: str,
    node: str,
    gpus: tuple[int, ...],
    prio: int,
    *,
    start: str | None = None,
    labels: dict[str, str] | None = None,
    cpu: str = "1",
) -> dict[str, Any]:
    rec = encode_record(Placement(node=node, gpus=gpus), []) if gpus else None
    p = o.pod(
        name,
        gpus=len(gpus),
        node_name=node,
        priority=prio,
        phase="Running",
        cpu=cpu,
        annotations={"gpuplace.io/gpus": rec} if rec else {},
    )
    if start:
        p["status"]["startTime"] = start
    if labels is not None:
        p["metadata"]["labels"] = labels
    return p


def full_node(prios: list[int], node: str = "p0") -> list[dict[str, Any]]:
    """One 1-GPU pod per GPU, `g<i>` on GPU i with priority prios[i]."""
    return [placed(f"g{i}", node, (i,), p) for i, p in enumerate(prios)]


def meta(pod: dict[str, Any], victims: dict[str, list[str]], pdb: int = 0) -> ExtenderPreemptionArgs:
    return ExtenderPreemptionArgs.model_validate(
        {
            "Pod": pod,
            "NodeNameToVictims": None,
            "NodeNameToMetaVictims": {
                n: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
                for n, uids in victims.items()
            },
        }
    )


def uids(pods: list[dict[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


def answer(r: Any, node: str, names: dict[str, str]) -> list[str]:
    back = {u: n for n, u in names.items()}
    return [back.get(p.uid, p.uid) for p in r.node_name_to_meta_victims[node].pods]


def unchanged(ctx: ExtenderContext, before: dict[str, Placement]) -> None:
    assert ctx.cache.state.allocations == before and ctx.cache.state.check_invariants() == []


def high(gpus: int = 2, *, prio: int = 100, **kw: Any) -> dict[str, Any]:
    return o.pod("high", gpus=gpus, priority=prio, annotations=PAIR, **kw)


# ---- item 3: never an empty list, never drop kube-scheduler's victims ------------------------------------
def test_when_gpuplace_sees_a_fit_the_schedulers_victims_are_kept() -> None:
    """The in-tree dry run needed a victim for cpu (gpuplace sees two free bridged GPUs): the old code
    answered [] for the node, which kube-scheduler v1.36 treats as an error that abandons preemption."""
    pods = [placed("cpu-hog", "p0", (), 0, cpu="120"), *full_node([0] * 6)]
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    before = dict(ctx.cache.state.allocations)
    r = preempt(meta(high(), {"p0": [u["cpu-hog"]]}, pdb=1), ctx)
    assert answer(r, "p0", u) == ["cpu-hog"]
    assert r.node_name_to_meta_victims["p0"].num_pdb_violations == 1  # the scheduler's own count
    unchanged(ctx, before)


def test_victims_gpuplace_does_not_know_are_kept() -> None:
    """A victim missing from gpuplace's cache (assumed by kube-scheduler, not bound yet) stays."""
    pods = full_node([0] * 8)
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    r = preempt(meta(high(), {"p0": ["assumed-uid", u["g0"], u["g1"]]}), ctx)
    assert answer(r, "p0", u) == ["assumed-uid", "g0", "g1"]


def test_victims_come_back_in_decreasing_priority() -> None:
    """pickOneNodeForPreemption reads Pods[0] as the highest-priority victim; the old code answered
    the lowest priority first."""
    pods = full_node([5, 1, 9, 9, 9, 9, 9, 9])
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g1"]]}), ctx)
    assert answer(r, "p0", u) == ["g0", "g1"]


def test_victims_are_added_to_free_an_nvlink_pair() -> None:
    """kube-scheduler counts GPUs: its two lowest-priority victims sit on GPUs 0 and 2 (different
    bridges). gpuplace keeps both and adds the least important partner (GPU 3, priority 2 < GPU 1's 3),
    in importance order; the old code dropped the node."""
    pods = full_node([1, 3, 1, 2, 8, 8, 8, 8])
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    before = dict(ctx.cache.state.allocations)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}), ctx)
    assert answer(r, "p0", u) == ["g3", "g0", "g2"]
    assert r.node_name_to_meta_victims["p0"].num_pdb_violations == 0
    unchanged(ctx, before)


def test_added_victims_follow_start_time_within_a_priority() -> None:
    """Equal priority: the later-started pod is less important (MoreImportantPod) and goes first."""
    pods = [
        placed("g0", "p0", (0,), 1),
        placed("g1", "p0", (1,), 2, start="2026-01-01T10:00:00Z"),
        placed("g2", "p0", (2,), 1),
        placed("g3", "p0", (3,), 2, start="2026-01-01T09:00:00Z"),
        *[placed(f"g{i}", "p0", (i,), 8) for i in range(4, 8)],
    ]
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}), ctx)
    assert answer(r, "p0", u) == ["g1", "g0", "g2"]  # g3 started earlier: reprieved


def test_pdb_violating_extras_are_reprieved_first_and_counted() -> None:
    """filterPodsWithPDBViolation: a PDB with no disruptions left makes its pods violating; they are
    the first to reprieve, and an added violating victim adds to NumPDBViolations."""
    pods = [
        placed("g0", "p0", (0,), 1),
        placed("g1", "p0", (1,), 2, labels={"app": "guarded"}),
        placed("g2", "p0", (2,), 1),
        placed("g3", "p0", (3,), 3),
        *[placed(f"g{i}", "p0", (i,), 8 if i < 6 else 7) for i in range(4, 8)],
    ]
    ctx = make_ctx([pairs_node()], pods)
    pdb = {
        "metadata": {"name": "guard", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
        "status": {"disruptionsAllowed": 0},
    }
    ctx.cache.disruption.replace_budgets([pdb])
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}, pdb=0), ctx)
    assert answer(r, "p0", u) == ["g3", "g0", "g2"]  # g1 (violating) reprieved although less important
    assert r.node_name_to_meta_victims["p0"].num_pdb_violations == 0
    # upstream rather evicts more pods than violate a budget: with GPUs 4-7 evictable too, g1 is
    # reprieved and the pair 6-7 (the two least important) is freed instead
    pods[3] = placed("g3", "p0", (3,), 9)
    ctx = make_ctx([pairs_node()], pods)
    ctx.cache.disruption.replace_budgets([pdb])
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}, pdb=0), ctx)
    assert sorted(answer(r, "p0", u)) == ["g0", "g2", "g6", "g7"]
    assert r.node_name_to_meta_victims["p0"].num_pdb_violations == 0
    # only the guarded pod can complete a pair: it is added, and counted
    pods[3:] = [placed(f"g{i}", "p0", (i,), 100) for i in range(3, 8)]
    ctx = make_ctx([pairs_node()], pods)
    ctx.cache.disruption.replace_budgets([pdb])
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}, pdb=0), ctx)
    assert answer(r, "p0", u) == ["g1", "g0", "g2"]
    assert r.node_name_to_meta_victims["p0"].num_pdb_violations == 1


def test_node_left_out_when_only_equal_priority_pods_could_help() -> None:
    pods = full_node([1, 100, 1, 100, 100, 100, 100, 100])
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    before = dict(ctx.cache.state.allocations)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}), ctx)
    assert r.node_name_to_meta_victims == {}
    unchanged(ctx, before)


def test_unknown_unresolvable_and_empty_candidates_are_left_out() -> None:
    pods = full_node([0] * 8)
    ctx = make_ctx([pairs_node(), o.node("c", product="", gpus=0)], pods)
    u = uids(pods)
    r = preempt(meta(high(), {"ghost": [u["g0"]], "c": ["x"], "p0": []}), ctx)
    assert r.node_name_to_meta_victims == {}


def test_full_victims_form_reads_priorities_from_the_pods() -> None:
    pods = full_node([1, 3, 1, 2, 8, 8, 8, 8])
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    args = ExtenderPreemptionArgs.model_validate(
        {
            "Pod": high(),
            "NodeNameToVictims": {"p0": {"Pods": [pods[0], pods[2]], "NumPDBViolations": 0}},
            "NodeNameToMetaVictims": None,
        }
    )
    assert answer(preempt(args, ctx), "p0", u) == ["g3", "g0", "g2"]


def test_nominated_pods_count_in_the_dry_run() -> None:
    """A higher-priority pod nominated to the node holds a free pair; the preemptor must not count it."""
    pods = [*full_node([1, 1, 9, 9, 9, 9]), placed("g6", "p0", (), 9)]
    ctx = make_ctx([pairs_node()], pods)
    nom = o.pod("nom", gpus=2, priority=200, annotations=PAIR)
    nom["status"]["nominatedNodeName"] = "p0"
    ctx.cache.apply_pod("ADDED", nom)
    u = uids(pods)
    r = preempt(meta(high(), {"p0": [u["g0"]]}), ctx)
    # GPUs 6-7 are held for "nom": evicting g0 alone frees no pair, g1 completes 0-1
    assert sorted(answer(r, "p0", u)) == ["g0", "g1"]  # equal importance: either order
    assert ctx.cache.state.check_invariants() == []


def test_ties_are_broken_towards_the_fewest_victims() -> None:
    """All extras have one importance (no start times): any reprieve order is upstream's; gpuplace
    takes the one that adds a single partner instead of freeing a third pair."""
    for _ in range(5):  # UIDs are random: a UID-order greedy would often evict two
        pods = full_node([1, 2, 1, 2, 2, 2, 2, 2])
        ctx = make_ctx([pairs_node()], pods)
        u = uids(pods)
        got = answer(preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}), ctx), "p0", u)
        assert len(got) == 3 and got[0] in ("g1", "g3") and got[1:] == ["g0", "g2"]


def test_running_pods_of_one_priority_add_the_fewest_victims() -> None:
    """Running pods all have start times, so no two share an importance. kube-scheduler's victims g0
    and g2 sit on different pairs; their partners g1 and g3 started FIRST. Reprieving one pod at a time
    in start-time order put g1, g3, g4, g5 back and then had to evict g6 and g7 (a whole pair) where
    one partner frees a pair — the e2e failure on kwok nodes, where pods have start times. Fewest
    added victims first; start time only breaks the tie between g1 and g3 (g3 started later: it goes)."""
    starts = ["08", "01", "08", "02", "03", "04", "05", "06"]
    pods = [
        placed(f"g{i}", "p0", (i,), 1 if i in (0, 2) else 2, start=f"2026-01-01T{h}:00:00Z")
        for i, h in enumerate(starts)
    ]
    ctx = make_ctx([pairs_node()], pods)
    u = uids(pods)
    before = dict(ctx.cache.state.allocations)
    r = preempt(meta(high(), {"p0": [u["g0"], u["g2"]]}), ctx)
    assert answer(r, "p0", u) == ["g3", "g0", "g2"]
    unchanged(ctx, before)


def test_a_preemptor_whose_bind_outcome_is_unknown_evicts_nothing_for_its_gpus() -> None:
    """The preemptor's earlier Binding to p1 lost its answer: its GPUs 6-7 there stay booked for it and
    a bind anywhere else is refused until that outcome is known. The old code counted its own held
    GPUs against it on p1 (adding two victims to the scheduler's cpu victim) and proposed victims on
    p0, where the bind that follows would be refused: pods evicted for nothing."""
    p0 = full_node([0] * 8, "p0")
    p1 = [placed("cpu-hog", "p1", (), 0, cpu="120"), *(placed(f"h{i}", "p1", (i,), 0) for i in range(6))]
    ctx = make_ctx([pairs_node("p0"), pairs_node("p1")], [*p0, *p1])
    pod = high()
    uid = pod["metadata"]["uid"]
    ctx.cache.reserve(uid, "default", "high", Placement(node="p1", gpus=(6, 7)))
    ctx.cache.unknown(uid, ctx.cache.clock() + 70)
    u = uids([*p0, *p1])
    before = dict(ctx.cache.state.allocations)
    r = preempt(meta(pod, {"p0": [u["g0"], u["g1"]], "p1": [u["cpu-hog"]]}), ctx)
    assert list(r.node_name_to_meta_victims) == ["p1"]
    assert answer(r, "p1", u) == ["cpu-hog"]  # the in-tree dry run's victim, nothing for the GPUs
    unchanged(ctx, before)
