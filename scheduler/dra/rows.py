"""scheduler.dra.fit for every offered node at once: the packed devices through placement_core.devicefit.

Same answers as calling `fit` per node (tests/scheduler/test_dra_packed.py holds them equal on random
clusters and claims): which nodes fit, each one's PCIe fit, and the sentence for each one that does
not. The kernel returns a code and the counts a sentence quotes (the sentences are fit's); nodes or
requests with quantities that are not whole numbers go to `fit` itself (scheduler.dra.packed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement_core import devicefit as df
from scheduler.dra.demand import DraDemand, DraRequest
from scheduler.dra.fit import fit, what
from scheduler.dra.state import DraState

NO_SLICES = "node publishes no ResourceSlices of the DRA GPU driver"


@dataclass(frozen=True, slots=True)
class DraFit:
    ok: npt.NDArray[np.bool_]
    pcie_fit: npt.NDArray[np.float64]  # 1.0 where no request needs one root; 0.0 where not ok
    texts: list[str]  # the distinct sentences
    which: npt.NDArray[np.int64]  # per node the index of its sentence in `texts`, -1 where ok

    @property
    def reasons(self) -> list[str]:
        """Per node the sentence why it does not fit, "" where it does."""
        return [self.texts[k] if k >= 0 else "" for k in self.which.tolist()]


def _sentence(code: int, r: DraRequest, n_ok: int, n_match: int, spread: tuple[tuple[str, int], ...]) -> str:
    if code == df.NO_ROOT:
        listed = ", ".join(f"{k} on {root or '(no pcieRoot)'}" for root, k in spread if k) or "none"
        return f"needs {what(r)}; free here: {listed}"
    if code == df.ALL_NOT_FREE:
        return f"needs {what(r)}; {n_ok} of {n_match} matching devices are free here"
    return f"needs {what(r)}; {n_ok} free here"


def _groups(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(distinct rows of `keys`, each row's index among them): a sort of one hash per row, checked
    row by row (np.unique(axis=0) sorts whole rows: 20 ms for 2,500 of them)."""
    h = np.zeros(len(keys), np.uint64)
    for col in keys.T.astype(np.uint64):
        h = h * np.uint64(1_000_003) ^ col
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    uniq = keys[first]
    if not (uniq[inv] == keys).all():  # a hash collision: group by whole rows after all
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    return uniq, inv.reshape(-1).astype(np.int64)


def fit_rows(dra: DraState, demand: DraDemand, names: list[str], *, twin: bool = False) -> DraFit:
    """`fit(dra.devices(n), dra.usage(n), demand, n)` for every n in `names`, as arrays. The nodes
    failing alike (same rule, counts and roots) share one sentence, written once."""
    m = len(names)
    ok = np.ones(m, np.bool_)
    pfit = np.ones(m, np.float64)
    texts: list[str] = []
    which = np.full(m, -1, np.int64)
    arr = np.asarray(names, dtype=object) if any(on for _, on in demand.allocated_on) else None
    for claim, on in demand.allocated_on:
        if on and arr is not None:
            elsewhere = ok & (arr != on)
            which[elsewhere] = len(texts)
            texts.append(f"claim {claim} is already allocated on node {on}")
            ok &= ~elsewhere
    if not demand.requests:
        pfit[~ok] = 0.0
        return DraFit(ok, pfit, texts, which)
    rest = np.nonzero(ok)[0]
    packed = dra.packed()
    compiled = packed.query(demand)
    by_hand: list[int] = []
    if compiled is None or packed.table is None or packed.usage is None:
        by_hand = rest.tolist()
    else:
        q, alts = compiled
        pos = packed.positions(names)[rest]
        inexact = np.zeros(len(pos), np.bool_)
        inexact[pos >= 0] = ~packed.exact[pos[pos >= 0]]
        out = df.fit_nodes(packed.table, packed.usage, q, np.where(inexact, -1, pos), twin=twin)
        ok[rest] = out.ok
        pfit[rest] = out.pcie_fit
        by_hand = rest[inexact].tolist()
        fail = np.nonzero(~out.ok & ~inexact)[0]
        if len(fail):
            at = pos[fail]
            sig = np.full(len(fail), -1, np.int64)
            sig[at >= 0] = packed.root_sig[at[at >= 0]]
            cols = (out.code[fail], out.alt[fail], out.n_ok[fail], out.n_match[fail], sig)
            uniq, inv = _groups(np.column_stack([*cols, out.spread[fail]]).astype(np.int64))
            which[rest[fail]] = len(texts) + inv
            for code, alt, n_ok, n_match, sg, *spread in uniq.tolist():
                if code == df.NO_DEVICES:
                    texts.append(NO_SLICES)
                    continue
                roots = (
                    (("", spread[0]), *zip(packed.root_names[sg], spread[1:], strict=False))
                    if sg >= 0
                    else ()
                )
                texts.append(_sentence(code, alts[alt], n_ok, n_match, roots))
    for i in by_hand:
        n = names[i]
        f = fit(dra.devices(n), dra.usage(n), demand, n)
        ok[i], pfit[i] = f.ok, f.pcie_fit
        if not f.ok:
            which[i] = len(texts)
            texts.append(f.reason)
    pfit[~ok] = 0.0
    return DraFit(ok, pfit, texts, which)
