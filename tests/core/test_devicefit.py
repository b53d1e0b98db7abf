"""Property test: placement_core.devicefit's kernel equals its pure-Python twin on random packed tables.

Small values on purpose (amounts 0..4, a few ids, a few roots), so that ties between PCIe roots,
capacities met exactly and counters at their limit come up in most examples."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from placement_core import devicefit as df

PROFILE = settings(max_examples=400, deadline=None)


@st.composite
def cases(draw: st.DrawFn) -> tuple[df.DeviceTable, df.DeviceUsage, df.DeviceQuery, np.ndarray]:
    """A random table, usage and query; hypothesis draws the shape and how likely each case is (a
    device taken, shareable, consuming counters...), numpy the arrays from a drawn seed."""
    rng = np.random.default_rng(draw(st.randoms()).getrandbits(64))
    p = {
        k: draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
        for k in ("taken", "exclusive", "multiple", "has", "pcie", "cons", "any")
    }
    n_nodes, n_caps = draw(st.integers(1, 4)), draw(st.integers(0, 2))
    sizes = rng.integers(0, 9, n_nodes)
    slots = rng.integers(0, 3, n_nodes)
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    slot_first = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
    rows, n_slots = int(first[-1]), int(slot_first[-1])
    node_of = np.repeat(np.arange(n_nodes), sizes)
    cons_n = np.where((slots[node_of] > 0) & (rng.random(rows) < p["cons"]), rng.integers(1, 3, rows), 0)
    cons_first = np.concatenate([[0], np.cumsum(cons_n)]).astype(np.int64)
    owner = np.repeat(node_of, cons_n)
    cons_slot = (
        slot_first[owner] + rng.integers(0, 1 << 30, len(owner)) % np.maximum(slots[owner], 1)
    ).astype(np.int64)
    t = df.DeviceTable(
        first,
        rng.choice(np.array([df.GPU, df.GPU, df.GPU, df.MIG, df.OTHER], np.int8), rows),
        rng.choice(np.array([0, 0, 0, 1], np.int32), (rows, df.N_ATTRS)),
        (rng.integers(-1, 3, rows) % np.maximum(sizes[node_of], 1)).astype(
            np.int32
        ),  # a rank below the node's size
        rng.random(rows) < p["multiple"],
        rng.integers(0, 5, (rows, n_caps)),
        rng.random((rows, n_caps)) < p["has"],
        cons_first,
        cons_slot,
        rng.integers(0, 2, len(cons_slot)),
        slot_first,
        rng.integers(0, 5, n_slots),
    )
    u = df.DeviceUsage(
        rng.random(rows) < p["taken"],
        rng.random(rows) < p["exclusive"],
        rng.integers(0, t.cap + 1),  # within what is published, as the ledger keeps it
        rng.integers(0, t.limit + 1),
    )
    alts = rng.integers(1, 3, draw(st.sampled_from([0, 1, 2, 2, 3])))
    n_alts = int(alts.sum())
    cap_n = rng.integers(0, 3, n_alts) * (rng.random(n_alts) < 0.6)
    q = df.DeviceQuery(
        np.concatenate([[0], np.cumsum(alts)]).astype(np.int64),
        np.where(
            rng.random(n_alts) < p["any"], df.ANY, rng.choice(np.array([df.GPU, df.MIG], np.int8), n_alts)
        ),
        np.where(
            rng.random((n_alts, df.N_ATTRS)) < p["any"],
            df.ANY,
            rng.choice(np.array([0, 1, df.NONE], np.int32), (n_alts, df.N_ATTRS)),
        ),
        rng.choice(np.array([0, 1, 1, 1, 2, 3], np.int64), n_alts),
        rng.random(n_alts) < p["pcie"],
        np.concatenate([[0], np.cumsum(cap_n)]).astype(np.int64),
        rng.integers(-1 if not n_caps else 0, max(n_caps, 1), int(cap_n.sum()))
        if n_caps
        else np.full(int(cap_n.sum()), -1),
        rng.integers(0, 4, int(cap_n.sum())),
    )
    nodes = rng.integers(-1, n_nodes, draw(st.integers(1, 6))).astype(np.int64)
    return t, u, q, nodes


@PROFILE
@given(cases())
def test_fit_kernel_equals_twin(case) -> None:
    t, u, q, nodes = case
    k = df.fit_nodes(t, u, q, nodes)
    w = df.fit_nodes(t, u, q, nodes, twin=True)
    for code in set(k.code.tolist()):
        event(f"code {code}")
    if (k.ok & (k.pcie_fit < 1)).any():
        event("a PCIe fit below 1")
    assert k.ok.tolist() == w.ok.tolist()
    assert k.code.tolist() == w.code.tolist()
    assert k.alt.tolist() == w.alt.tolist()
    assert k.n_ok.tolist() == w.n_ok.tolist()
    assert k.n_match.tolist() == w.n_match.tolist()
    assert k.pcie_fit.tolist() == w.pcie_fit.tolist()
    assert k.spread.tolist() == w.spread.tolist()


def _one_node(
    kind, root, multiple=None, cap=None, cons=(), limit=(), taken=None, used_cap=None, product=None
):  # type: ignore[no-untyped-def]
    """A table of one node from per-device lists; `cons`: per device a list of (slot, amount)."""
    k = len(kind)
    cap = np.zeros((k, 0), np.int64) if cap is None else np.asarray(cap, np.int64).reshape(k, -1)
    cons = list(cons) or [[] for _ in range(k)]
    t = df.DeviceTable(
        np.array([0, k], np.int64),
        np.asarray(kind, np.int8),
        np.array([[0, p, 0] for p in product or [0] * k], np.int32),
        np.asarray(root, np.int32),
        np.asarray(multiple or [False] * k, np.bool_),
        cap,
        np.ones(cap.shape, np.bool_),
        np.concatenate([[0], np.cumsum([len(c) for c in cons])]).astype(np.int64),
        np.array([s for c in cons for s, _ in c], np.int64),
        np.array([a for c in cons for _, a in c], np.int64),
        np.array([0, len(limit)], np.int64),
        np.asarray(limit, np.int64),
    )
    u = df.DeviceUsage(
        np.asarray(taken or [False] * k, np.bool_),
        np.zeros(k, np.bool_),
        np.zeros(cap.shape, np.int64)
        if used_cap is None
        else np.asarray(used_cap, np.int64).reshape(cap.shape),
        np.zeros(len(limit), np.int64),
    )
    return t, u


def _query(*alts, product=None):  # type: ignore[no-untyped-def]
    """One request per (count, pcie, caps) with caps a list of (column, amount); `product`: per
    request the productName id it selects (ANY: none)."""
    caps = [c for _, _, c in alts]
    attr = np.full((len(alts), df.N_ATTRS), df.ANY, np.int32)
    attr[:, 1] = product or [df.ANY] * len(alts)
    return df.DeviceQuery(
        np.arange(len(alts) + 1, dtype=np.int64),
        np.full(len(alts), df.GPU, np.int8),
        attr,
        np.array([n for n, _, _ in alts], np.int64),
        np.array([p for _, p, _ in alts], np.bool_),
        np.concatenate([[0], np.cumsum([len(c) for c in caps])]).astype(np.int64),
        np.array([c for cs in caps for c, _ in cs], np.int64),
        np.array([a for cs in caps for _, a in cs], np.int64),
    )


def _both(t, u, q):  # type: ignore[no-untyped-def]
    k, w = df.fit_nodes(t, u, q, np.array([0])), df.fit_nodes(t, u, q, np.array([0]), twin=True)
    assert (k.ok.tolist(), k.pcie_fit.tolist(), k.code.tolist()) == (
        w.ok.tolist(),
        w.pcie_fit.tolist(),
        w.code.tolist(),
    )
    return bool(k.ok[0]), float(k.pcie_fit[0]), int(k.code[0])


def test_equally_free_roots_go_to_the_first_root_name_and_later_requests_see_it_taken() -> None:
    """Roots 0 and 1 have 2 free GPUs each: a 2-GPU one-root request takes root 0's (the first name),
    so a second one-root request of 2 gets root 1, exactly (fit 1 × 1); a third finds none left.
    With 3 + 2 free, a 1-GPU request takes the tighter root 1 (fit 1/2), and a 2-GPU one then root 0
    (2 of its 3)."""
    t, u = _one_node([df.GPU] * 4, [0, 0, 1, 1])
    assert _both(t, u, _query((2, True, []), (2, True, []))) == (True, 1.0, df.FITS)
    assert _both(t, u, _query((2, True, []), (2, True, []), (1, True, []))) == (False, 0.0, df.NO_ROOT)
    t, u = _one_node([df.GPU] * 5, [0, 0, 0, 1, 1])
    assert _both(t, u, _query((1, True, []), (2, True, []))) == (
        True,
        1 / 2 * 2 / 3,
        df.FITS,
    )  # root 1, then 0
    # the tie's winner matters to what follows: root 0's GPUs are the only ones of product 1
    t, u = _one_node([df.GPU] * 4, [0, 0, 1, 1], product=[1, 1, 0, 0])
    assert _both(t, u, _query((1, True, []), (2, False, []), product=[df.ANY, 1])) == (False, 0.0, df.TOO_FEW)


def test_a_pass_counts_the_capacity_and_counters_its_earlier_requests_took() -> None:
    # one shared GPU of capacity 10, 4 used: a request of 6 fits exactly, a second of 1 no longer does
    t, u = _one_node([df.GPU], [0], multiple=[True], cap=[10], taken=[True], used_cap=[4])
    assert _both(t, u, _query((1, False, [(0, 6)])))[0]
    assert _both(t, u, _query((1, False, [(0, 6)]), (1, False, [(0, 1)]))) == (False, 0.0, df.TOO_FEW)
    # two partitions on one counter of 3: each consumes 2, so only one of them can be had
    t, u = _one_node([df.GPU] * 2, [0, 0], cons=[[(0, 2)], [(0, 2)]], limit=[3])
    assert _both(t, u, _query((1, False, [])))[0]
    assert _both(t, u, _query((1, False, []), (1, False, []))) == (False, 0.0, df.TOO_FEW)
