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
    reasons: list[str]  # "" where ok


def _sentence(code: int, r: DraRequest, n_ok: int, n_match: int, spread: tuple[tuple[str, int], ...]) -> str:
    if code == df.NO_ROOT:
        listed = ", ".join(f"{k} on {root or '(no pcieRoot)'}" for root, k in spread if k) or "none"
        return f"needs {what(r)}; free here: {listed}"
    if code == df.ALL_NOT_FREE:
        return f"needs {what(r)}; {n_ok} of {n_match} matching devices are free here"
    return f"needs {what(r)}; {n_ok} free here"


def fit_rows(dra: DraState, demand: DraDemand, names: list[str], *, twin: bool = False) -> DraFit:
    """`fit(dra.devices(n), dra.usage(n), demand, n)` for every n in `names`, as arrays."""
    m = len(names)
    ok = np.ones(m, np.bool_)
    pfit = np.ones(m, np.float64)
    reasons = [""] * m
    arr = np.asarray(names, dtype=object)
    for claim, on in demand.allocated_on:
        if on:
            text = f"claim {claim} is already allocated on node {on}"
            for i in np.nonzero(ok & (arr != on))[0].tolist():
                reasons[i] = text
            ok &= arr == on
    if not demand.requests:
        pfit[~ok] = 0.0
        return DraFit(ok, pfit, reasons)
    rest = np.nonzero(ok)[0]
    packed = dra.packed()
    compiled = packed.query(demand)
    by_hand: list[int] = []
    if compiled is None or packed.table is None or packed.usage is None:
        by_hand = rest.tolist()
    else:
        q, alts = compiled
        pos = np.fromiter((packed.pos.get(names[i], -1) for i in rest.tolist()), np.int64, len(rest))
        inexact = np.zeros(len(pos), np.bool_)
        inexact[pos >= 0] = ~packed.exact[pos[pos >= 0]]
        out = df.fit_nodes(packed.table, packed.usage, q, np.where(inexact, -1, pos), twin=twin)
        ok[rest] = out.ok
        pfit[rest] = out.pcie_fit
        cache: dict[tuple[int, int, int, int, tuple[tuple[str, int], ...]], str] = {}
        for j in np.nonzero(~out.ok)[0].tolist():
            i = int(rest[j])
            code = int(out.code[j])
            if inexact[j]:
                by_hand.append(i)
            elif code == df.NO_DEVICES:
                reasons[i] = NO_SLICES
            else:
                spread: tuple[tuple[str, int], ...] = ()
                if code == df.NO_ROOT:  # free devices per root, sorted by name ("" first), as fit lists them
                    row = out.spread[j].tolist()
                    spread = (("", row[0]), *zip(packed.roots[int(pos[j])], row[1:], strict=False))
                key = (code, int(out.alt[j]), int(out.n_ok[j]), int(out.n_match[j]), spread)
                if key not in cache:
                    cache[key] = _sentence(code, alts[key[1]], key[2], key[3], spread)
                reasons[i] = cache[key]
    for i in by_hand:
        n = names[i]
        f = fit(dra.devices(n), dra.usage(n), demand, n)
        ok[i], pfit[i], reasons[i] = f.ok, f.pcie_fit, f.reason
    pfit[~ok] = 0.0
    return DraFit(ok, pfit, reasons)
