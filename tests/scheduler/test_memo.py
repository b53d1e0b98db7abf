"""The memoised hot path answers byte for byte as the plain one.

Two extenders over the same cluster see the same script of calls: one with every cache on (the
evaluation/score memo, the NodeNames byte cache of the HTTP layer), one with the memo off and each
request parsed in full. Pods of repeated shapes interleave their filter and prioritize calls as
kube-scheduler's do with several pods in flight, and the cluster changes between calls (pods start and
finish, a node is cordoned, one is added), so a memo entry that outlived a change would show.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from scheduler.context import ExtenderContext
from scheduler.failmaps import Answers
from scheduler.http import _args_and_names
from scheduler.memo import EvalMemo, RowMemo
from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import ExtenderArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

SHAPES: list[dict[str, Any]] = [
    {"gpus": 1},
    {"gpus": 2},
    {"gpus": 4, "annotations": {"gpuplace.io/nvlink": "required"}},
    {"gpus": 8, "annotations": {"gpuplace.io/nvlink": "required"}},
    {"gpus": 1, "annotations": {"gpuplace.io/gpu-milli": "500"}},
    {"gpus": 1, "annotations": {"gpuplace.io/gpu-models": "V100-32GB"}},
    {"mig": "1g.10gb"},
]


def _nodes() -> list[dict[str, Any]]:
    return [
        *(o.node(f"h{i}") for i in range(4)),
        o.node("v0", product="Tesla-V100-SXM2-32GB", memory_mib=32768),
        o.node("a0", product="NVIDIA-A100-SXM4-80GB", gpus=4, memory_mib=81920, mig={"1g.10gb": 28}),
    ]


def _pair_cached(ctx: ExtenderContext, body: bytes) -> bytes:
    a, names = _args_and_names(body, ctx)
    return filter_nodes(a, ctx, names=names).encode()


def _pair_plain(ctx: ExtenderContext, body: bytes) -> bytes:
    return filter_nodes(ExtenderArgs.model_validate_json(body), ctx).encode()


def _prio_cached(ctx: ExtenderContext, body: bytes) -> bytes:
    a, names = _args_and_names(body, ctx)
    return prioritize(a, ctx, names=names).encode()


def _prio_plain(ctx: ExtenderContext, body: bytes) -> bytes:
    return prioritize(ExtenderArgs.model_validate_json(body), ctx).encode()


def test_cached_path_answers_as_the_uncached_one() -> None:
    cached, plain = make_ctx(_nodes()), make_ctx(_nodes())
    plain.memo = EvalMemo(size=0)
    plain.rows = RowMemo(size=0)
    plain.answers = Answers(size=0)
    rng = random.Random(7)
    names = [n["metadata"]["name"] for n in _nodes()]
    running: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], list[str]]] = []
    for step in range(300):
        event = rng.random()
        if event < 0.35:  # a new pod's filter
            p = o.pod(f"p{step}", **rng.choice(SHAPES))
            body = orjson.dumps(o.extender_args(p, names=names))
            got, want = _pair_cached(cached, body), _pair_plain(plain, body)
            assert got == want, f"step {step}: filter differs"
            passed = orjson.loads(got)["NodeNames"] or []
            pending.append((p, passed))
        elif event < 0.7 and pending:  # some pod's prioritize, not necessarily the last filtered
            p, passed = pending.pop(rng.randrange(len(pending)))
            body = orjson.dumps(o.extender_args(p, names=passed))
            assert _prio_cached(cached, body) == _prio_plain(plain, body), f"step {step}: prioritize differs"
        elif event < 0.85:  # a pod starts on some node (the cluster changes under the memo)
            r = o.pod(
                f"run{step}", gpus=rng.choice([1, 2, 4]), node_name=rng.choice(names[:4]), phase="Running"
            )
            running.append(r)
            for ctx in (cached, plain):
                ctx.cache.apply_pod("ADDED", r)
        elif event < 0.95 and running:  # one finishes
            r = running.pop(rng.randrange(len(running)))
            for ctx in (cached, plain):
                ctx.cache.apply_pod("DELETED", r)
        else:  # a node appears, or one is cordoned
            n = (
                o.node(f"x{step}")
                if rng.random() < 0.5
                else o.node(rng.choice(names[:4]), unschedulable=True)
            )
            for ctx in (cached, plain):
                ctx.cache.apply_node("ADDED" if n["metadata"]["name"] not in names else "MODIFIED", n)
            if n["metadata"]["name"] not in names:
                names.append(n["metadata"]["name"])
    assert cached.names.hits > 0, "the NodeNames byte cache was never used"
    assert cached.memo.hits > 0, "the evaluation memo was never used"
    assert cached.rows.patches > 0, "no memo entry was ever patched"


def _fleet() -> list[dict[str, Any]]:
    """24 nodes of four kinds, so a change touches a few rows of many."""
    return [
        *(o.node(f"h{i:02d}") for i in range(12)),
        *(o.node(f"l{i:02d}", product="NVIDIA-L40S", memory_mib=46068, replicas=4) for i in range(6)),
        *(o.node(f"v{i}", product="Tesla-V100-SXM2-32GB", memory_mib=32768) for i in range(3)),
        *(
            o.node(f"a{i}", product="NVIDIA-A100-SXM4-80GB", gpus=4, memory_mib=81920, mig={"1g.10gb": 28})
            for i in range(3)
        ),
    ]


@pytest.mark.parametrize("decisive", [False, True])
def test_patched_rows_and_answers_equal_fresh_ones(decisive: bool) -> None:
    """The per-row memo and the kept filter answers (scheduler.memo, scheduler.failmaps) after many small
    changes answer byte for byte as an extender that computes everything afresh: pods of eight shapes
    come back after binds, releases, nominations and node changes elsewhere."""
    fleet = _fleet()
    cached, plain = make_ctx(fleet, decisive=decisive), make_ctx(fleet, decisive=decisive)
    plain.memo, plain.rows, plain.answers = EvalMemo(size=0), RowMemo(size=0), Answers(size=0)
    shapes = [
        *SHAPES,
        {"gpus": 1, "annotations": {"gpuplace.io/gpu-milli": "250"}, "cpu": "8"},
        {"gpus": 2, "cpu": "64"},
    ]
    rng = random.Random(11)
    names = [n["metadata"]["name"] for n in fleet]
    running: list[dict[str, Any]] = []
    for step in range(400):
        event = rng.random()
        if event < 0.4:  # a pod of a shape seen before: filter, then prioritize on what passed
            p = o.pod(f"p{step}", **rng.choice(shapes))
            offered = names if rng.random() < 0.7 else rng.sample(names, len(names) - 3)
            body = orjson.dumps(o.extender_args(p, names=offered))
            got, want = _pair_cached(cached, body), _pair_plain(plain, body)
            assert got == want, f"step {step}: filter differs"
            passed = orjson.loads(got)["NodeNames"] or []
            body = orjson.dumps(o.extender_args(p, names=passed))
            assert _prio_cached(cached, body) == _prio_plain(plain, body), f"step {step}: prioritize differs"
        elif event < 0.75:  # a bind: one node changes
            p = o.pod(f"run{step}", **rng.choice(shapes[:5]), node_name=rng.choice(names), phase="Running")
            running.append(p)
            for ctx in (cached, plain):
                ctx.cache.apply_pod("ADDED", p)
        elif event < 0.9 and running:  # a pod finishes
            p = running.pop(rng.randrange(len(running)))
            for ctx in (cached, plain):
                ctx.cache.apply_pod("DELETED", p)
        elif event < 0.95:  # a high-priority pod nominated to a node (preemption in progress)
            p = o.pod(f"nom{step}", gpus=rng.choice([1, 4]), priority=1000)
            p["status"]["nominatedNodeName"] = rng.choice(names[:12])
            for ctx in (cached, plain):
                ctx.cache.apply_pod("ADDED", p)
        else:  # a node's hardware changes (cordoned), or a node appears
            n = o.node(rng.choice(names[:12]), unschedulable=True) if rng.random() < 0.5 else o.node(f"x{step}")
            for ctx in (cached, plain):
                ctx.cache.apply_node("MODIFIED" if n["metadata"]["name"] in names else "ADDED", n)
            if n["metadata"]["name"] not in names:
                names.append(n["metadata"]["name"])
    assert cached.rows.patches > 10, "the per-row memo was hardly ever patched"
    assert cached.answers.patches > 10, "kept filter answers were hardly ever patched"
