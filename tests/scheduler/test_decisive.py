"""Decisive mode: filter passes only the node prioritize would rank first, and says why for the rest."""

from __future__ import annotations

import numpy as np
import orjson

from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import ExtenderArgs
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx


def _nodes() -> list[dict]:  # type: ignore[type-arg]
    return [o.node(f"h{i}") for i in range(4)] + [o.node("c0", product="", gpus=0)]


def _running() -> list[dict]:  # type: ignore[type-arg]
    # h1 is the fullest that still fits 2 GPUs, h3 cannot take them: most-allocated prefers h1
    return [
        o.pod("a", gpus=3, node_name="h0", phase="Running"),
        o.pod("b", gpus=6, node_name="h1", phase="Running"),
        o.pod("c", gpus=7, node_name="h3", phase="Running"),
    ]


def test_decisive_filter_keeps_only_the_best_scored_node() -> None:
    plain, decisive = make_ctx(_nodes(), _running()), make_ctx(_nodes(), _running(), decisive=True)
    names = ["h0", "h1", "h2", "h3", "c0"]
    p = o.pod("p", gpus=2)
    args = ExtenderArgs.model_validate(o.extender_args(p, names=names))
    wide = filter_nodes(args, plain).to_wire()
    assert wide.node_names == ["h0", "h1", "h2"]
    ranked = prioritize(ExtenderArgs.model_validate(o.extender_args(p, names=wide.node_names)), plain)
    best = wide.node_names[int(np.argmax(ranked.scores))]
    assert best == "h1"
    narrow = filter_nodes(args, decisive).to_wire()
    assert narrow.node_names == [best]
    assert set(narrow.failed_nodes) == {"h0", "h2", "h3"}
    assert "decisive mode" in narrow.failed_nodes["h0"] and best in narrow.failed_nodes["h0"]
    assert narrow.failed_nodes["h3"] == wide.failed_nodes["h3"]
    assert narrow.failed_and_unresolvable_nodes == wide.failed_and_unresolvable_nodes
    orjson.loads(filter_nodes(args, decisive).encode())  # the merged maps are valid JSON


def test_decisive_filter_with_one_feasible_node_is_the_plain_answer() -> None:
    plain, decisive = make_ctx(_nodes(), _running()), make_ctx(_nodes(), _running(), decisive=True)
    args = ExtenderArgs.model_validate(o.extender_args(o.pod("p", gpus=8), names=["h0", "h1", "h2", "h3"]))
    assert filter_nodes(args, decisive).encode() == filter_nodes(args, plain).encode()
