"""The byte-level NodeNames cache: the fast path answers exactly what the full parse answers."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from scheduler.context import ExtenderContext
from scheduler.http import _args_and_names
from scheduler.namelists import NameList, NameLists
from tests.scheduler import objects as o

ALL = ["h0", "h1", "v0", "a0", "c0"]


@given(st.lists(st.integers(0, 10), min_size=0, max_size=40))
def test_priority_template_is_valid_json_with_the_scores(scores: list[int]) -> None:
    names = [f"node-{i}" for i in range(len(scores))]
    nl = NameList.of(names)
    out = orjson.loads(nl.priorities_json(np.array(scores, np.int64)))
    assert out == [{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)]
    child = nl.subset(np.array([i % 2 == 0 for i in range(len(scores))], bool))
    kept = scores[::2]
    assert orjson.loads(child.priorities_json(np.array(kept, np.int64))) == [
        {"Host": n, "Score": s} for n, s in zip(names[::2], kept, strict=True)
    ]


def test_tail_hits_only_for_validated_top_level_lists(cluster: ExtenderContext) -> None:
    p = o.pod("p", gpus=1)
    raw = orjson.dumps(o.extender_args(p, names=ALL))
    _, nl = _args_and_names(raw, cluster)
    assert nl is not None and cluster.names.hits == 0
    args2, nl2 = _args_and_names(raw, cluster)
    assert nl2 is nl and cluster.names.hits == 1 and args2.pod.metadata.uid == p["metadata"]["uid"]
    # the same list inside the Pod (a label literally named NodeNames) is not mistaken for the top-level key
    sneaky = o.pod("s", gpus=1)
    sneaky["metadata"]["labels"] = {"NodeNames": "x"}
    body = orjson.dumps({"Pod": sneaky, "Nodes": None, "NodeNames": ["h1"]})
    a, n = _args_and_names(body, cluster)
    assert n is not None and n.names.tolist() == ["h1"] and a.pod.metadata.labels == {"NodeNames": "x"}
    reordered = orjson.dumps({"NodeNames": ALL, "Pod": p})
    a, n = _args_and_names(reordered, cluster)
    assert n is not None and n.names.tolist() == ALL


def test_rows_follow_node_churn(cluster: ExtenderContext) -> None:
    nl = cluster.names.for_names(["h1", "zz"])
    assert nl.resolve(cluster.cache.state.index, cluster.cache.index_gen).tolist()[1] == -1
    cluster.cache.apply_node("ADDED", o.node("zz"))
    assert nl.resolve(cluster.cache.state.index, cluster.cache.index_gen).tolist()[1] >= 0


def test_lru_is_bounded() -> None:
    lists = NameLists(size=2)
    for i in range(5):
        lists.for_names([f"n{i}"], NameLists.tail_of(NameList.of([f"n{i}"])))
    assert len(lists._by_names) == 2 and len(lists._by_tail) == 2


names_st = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), max_size=10)


@given(names_st)
def test_fragments_encode_any_names(names: list[str]) -> None:
    nl = NameList.of(names)
    assert orjson.loads(nl.json_array()) == names
    vals = np.empty(len(names), object)
    vals[:] = [b'":1,"'] * len(names)
    assert orjson.loads(nl.json_map(np.arange(len(names)), vals)) == dict.fromkeys(names, 1)
    scores = np.arange(len(names), dtype=np.int64) % 11
    assert orjson.loads(nl.priorities_json(scores)) == [
        {"Host": n, "Score": int(s)} for n, s in zip(names, scores, strict=True)
    ]
