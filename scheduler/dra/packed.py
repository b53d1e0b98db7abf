"""Every node's DRA devices and usage as placement_core.devicefit arrays, kept current incrementally.

DraState reports what moved: a node's devices (a slice event: `devices_changed`) or what its claims
hold (a claim, pod or binding event: `usage_changed`). `refresh` repacks exactly that: the arrays of
the whole table are concatenated again only when some node's devices changed (slices change when
nodes come and go, rarely), and a node whose usage changed has its rows rewritten in place — so after
a bind, the next pod's filter repacks one node, not 5,000.

What the packing keeps from scheduler.dra.fit's rules (held equal by tests/scheduler/test_dra_packed.py):
the devices in `NodeDevices.ordered()` order; kind GPU for a whole-GPU device (`NodeDevices.index`),
MIG for a MIG device (`NodeDevices.mig`); the string value of `profile`, `productName` and `type` (as
`str(value or "")`) interned; the PCIe root's rank among the node's roots sorted by name. Quantities
are packed only when they are whole numbers below 2**56; a node or a request with any other
quantity (`500m` of a capacity) is answered by scheduler.dra.fit itself (`exact`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from placement_core import devicefit as df
from scheduler.dra.demand import DraDemand, DraRequest
from scheduler.dra.inventory import DeviceKey, NodeDevices
from scheduler.dra.ledger import NodeUsage
from scheduler.dra.objects import PCIE_ROOT

ATTRS = ("profile", "productName", "type")
_BIG = 1 << 56
KINDS = {"gpu": df.GPU, "mig": df.MIG}


def whole(q: Decimal) -> int | None:
    """`q` as an int when it is a whole number below 2**56, else None."""
    if not q.is_finite() or q != q.to_integral_value() or abs(q) >= _BIG:
        return None
    return int(q)


@dataclass(slots=True)
class _Layout:
    """One node's devices, packed with node-local row and slot numbers."""

    nd: NodeDevices
    roots: list[str]  # its PCIe roots by name: a device's `root` is the index here
    row: dict[DeviceKey, int]
    kind: npt.NDArray[np.int8]
    attr: npt.NDArray[np.int32]
    root: npt.NDArray[np.int32]
    multiple: npt.NDArray[np.bool_]
    caps: npt.NDArray[np.int64]  # [published capacities, 3]: row, column, amount
    n_cons: npt.NDArray[np.int64]  # consumptions per row
    cons_slot: npt.NDArray[np.int64]  # node-local slot
    cons_amount: npt.NDArray[np.int64]
    slot: dict[tuple[tuple[str, str, str], str], int]  # ((driver, pool, counterSet), counter) → slot
    limit: npt.NDArray[np.int64]
    exact: bool


@dataclass(slots=True)
class _Held:
    """One node's usage, packed against its _Layout."""

    use: NodeUsage
    taken: list[int]
    exclusive: list[int]
    caps: list[tuple[int, int, int]]  # (row, column, amount)
    used: list[tuple[int, int]]  # (slot, amount)
    exact: bool


class PackedDevices:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}  # attribute value → id
        self.caps: dict[str, int] = {}  # capacity name → column
        self._wholes: dict[Decimal, int | None] = {}
        self._layouts: dict[str, _Layout] = {}
        self._held: dict[str, _Held] = {}
        self._layout_dirty: set[str] = set()
        self._usage_dirty: set[str] = set()
        self._all_dirty = True
        self.pos: dict[str, int] = {}  # node → index in the table
        self.root_names: list[tuple[str, ...]] = []  # distinct PCIe root lists (by name = rank order)
        self.root_sig = np.zeros(0, np.int64)  # per table node: its index in `root_names`
        self._positions: dict[tuple[str, ...], npt.NDArray[np.int64]] = {}
        self.table: df.DeviceTable | None = None
        self.usage: df.DeviceUsage | None = None
        self.exact = np.zeros(0, np.bool_)  # per table node: packed exactly
        self.repacks = 0  # table rebuilds (the bench and tests read it)

    # ---- what DraState reports -------------------------------------------------------------------
    def devices_changed(self, nodes: Iterable[str]) -> None:
        self._layout_dirty.update(nodes)

    def usage_changed(self, nodes: Iterable[str]) -> None:
        self._usage_dirty.update(nodes)

    def reset(self) -> None:
        self._all_dirty = True

    # ---- packing ---------------------------------------------------------------------------------
    def _id(self, value: str) -> int:
        return self.values.setdefault(value, len(self.values))

    def _whole(self, q: Decimal) -> int | None:
        if q not in self._wholes:  # few distinct amounts (80Gi, 1, ...): Decimal arithmetic once each
            self._wholes[q] = whole(q)
        return self._wholes[q]

    def _layout(self, nd: NodeDevices) -> _Layout:
        ordered = nd.ordered()
        values, vocab, index, mig, wh = self.values, self.caps, nd.index, nd.mig, self._whole
        kind: list[int] = []
        attr: list[int] = []
        root: list[int] = []
        multiple: list[bool] = []
        roots = sorted({r for _, d in ordered if (r := str(d.attributes.get(PCIE_ROOT) or ""))})
        rank = {r: i for i, r in enumerate(roots)}
        caps: list[tuple[int, int, int]] = []
        n_cons: list[int] = []
        cons_slot: list[int] = []
        cons_amount: list[int] = []
        slot: dict[tuple[tuple[str, str, str], str], int] = {}
        limit: list[int] = []
        exact = True
        for i, (key, d) in enumerate(ordered):
            at = d.attributes
            kind.append(df.GPU if key in index else df.MIG if key in mig else df.OTHER)
            for a in ATTRS:
                v = str(at.get(a) or "")
                x = values.get(v)
                if x is None:
                    x = values[v] = len(values)
                attr.append(x)
            root.append(rank.get(str(at.get(PCIE_ROOT) or ""), -1))
            multiple.append(d.multiple)
            for name, q in d.capacity.items():
                c = vocab.get(name)
                if c is None:
                    c = vocab[name] = len(vocab)
                w = wh(q)
                exact &= w is not None
                caps.append((i, c, w or 0))
            n = 0
            for cs, amounts in d.consumes:
                ck = (key[0], key[1], cs)
                for name, q in amounts:
                    sl = slot.get((ck, name))
                    if sl is None:
                        sl = slot[(ck, name)] = len(limit)
                        lim = wh(nd.counters.get(ck, {}).get(name, Decimal(0)))
                        exact &= lim is not None
                        limit.append(lim or 0)
                    w = wh(q)
                    exact &= w is not None
                    n += 1
                    cons_slot.append(sl)
                    cons_amount.append(w or 0)
            n_cons.append(n)
        return _Layout(
            nd,
            roots,
            {key: i for i, (key, _) in enumerate(ordered)},
            np.array(kind, np.int8),
            np.array(attr, np.int32).reshape(len(ordered), df.N_ATTRS),
            np.array(root, np.int32),
            np.array(multiple, np.bool_),
            np.array(caps, np.int64).reshape(-1, 3),
            np.array(n_cons, np.int64),
            np.array(cons_slot, np.int64),
            np.array(cons_amount, np.int64),
            slot,
            np.array(limit, np.int64),
            exact,
        )

    def _held_of(self, lay: _Layout, use: NodeUsage) -> _Held:
        exact = True
        caps = []
        for key, amounts in use.consumed.items():
            i = lay.row.get(key)
            if i is None:
                continue
            for name, q in amounts.items():
                c = self.caps.get(name)
                if c is None:
                    continue  # no device publishes it: the capacity check fails before reading it
                v = self._whole(q)
                exact &= v is not None
                caps.append((i, c, v or 0))
        used = []
        for ck, amounts in use.counters.items():
            for name, q in amounts.items():
                s = lay.slot.get((ck, name))
                if s is not None:
                    v = self._whole(q)
                    exact &= v is not None
                    used.append((s, v or 0))
        return _Held(
            use,
            [i for key, who in use.holders.items() if who and (i := lay.row.get(key)) is not None],
            [i for key in use.exclusive if (i := lay.row.get(key)) is not None],
            caps,
            used,
            exact,
        )

    def refresh(self, devices: dict[str, NodeDevices], usage_of: Callable[[str], NodeUsage]) -> None:
        """Bring the arrays up to date with `devices` (DraState's counted nodes) and their usage."""
        if self._all_dirty:
            self._layouts.clear()
            self._layout_dirty = set(devices)
        if self._all_dirty or self._layout_dirty:
            for n in self._layout_dirty:
                nd = devices.get(n)
                if nd is not None and nd.gpus:
                    self._layouts[n] = self._layout(nd)
                else:
                    self._layouts.pop(n, None)
                self._held.pop(n, None)
            before = (self.pos, self.table, self.usage, self.exact) if not self._all_dirty else None
            self._assemble()
            if before is None:
                self._usage_dirty = set(self._layouts)
            else:
                self._usage_dirty |= self._carry(*before, changed=self._layout_dirty)
            self._layout_dirty.clear()
            self._all_dirty = False
        if self._usage_dirty:
            for n in self._usage_dirty:
                if n in self._layouts:
                    self._write_usage(n, usage_of(n))
            self._usage_dirty.clear()

    def _carry(
        self,
        pos: dict[str, int],
        table: df.DeviceTable | None,
        usage: df.DeviceUsage | None,
        exact: npt.NDArray[np.bool_],
        *,
        changed: set[str],
    ) -> set[str]:
        """Copy the usage rows of the nodes whose devices did not change from the table before the
        re-join (in bulk); the nodes whose usage must be written afresh."""
        if table is None or usage is None:
            return set(self._layouts)
        assert self.table is not None and self.usage is not None
        keep = [n for n in self._layouts if n not in changed and n in pos]
        old = np.array([pos[n] for n in keep], np.int64)
        new = np.array([self.pos[n] for n in keep], np.int64)

        def rows(first: df.I64, at: df.I64) -> df.I64:
            sizes = first[at + 1] - first[at]
            starts = np.repeat(first[at], sizes)
            offsets = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            out: df.I64 = starts + offsets
            return out

        if keep:
            o, n = rows(table.first, old), rows(self.table.first, new)
            self.usage.taken[n] = usage.taken[o]
            self.usage.exclusive[n] = usage.exclusive[o]
            width = min(usage.used_cap.shape[1], self.usage.used_cap.shape[1])
            self.usage.used_cap[n, :width] = usage.used_cap[o, :width]
            self.usage.used[rows(self.table.slot_first, new)] = usage.used[rows(table.slot_first, old)]
            self.exact[new] = exact[old]
        return set(self._layouts) - set(keep)

    def _assemble(self) -> None:
        self.repacks += 1
        names = list(self._layouts)
        lays = [self._layouts[n] for n in names]
        self.pos = {n: i for i, n in enumerate(names)}
        self._positions.clear()
        sigs: dict[tuple[str, ...], int] = {}
        self.root_sig = np.array([sigs.setdefault(tuple(x.roots), len(sigs)) for x in lays], np.int64)
        self.root_names = list(sigs)
        sizes = np.array([len(x.kind) for x in lays], np.int64)
        first = np.zeros(len(lays) + 1, np.int64)
        np.cumsum(sizes, out=first[1:])
        n_slots = np.array([len(x.limit) for x in lays], np.int64)
        slot_first = np.zeros(len(lays) + 1, np.int64)
        np.cumsum(n_slots, out=slot_first[1:])
        rows = int(first[-1])

        def cat(arrays: list[npt.NDArray[Any]], dtype: type, shape: tuple[int, ...] = ()) -> npt.NDArray[Any]:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros((0, *shape), dtype)

        n_cons = cat([x.n_cons for x in lays], np.int64)
        cons_first = np.zeros(rows + 1, np.int64)
        np.cumsum(n_cons, out=cons_first[1:])
        cons_slot = cat([x.cons_slot for x in lays], np.int64) + np.repeat(
            slot_first[:-1], [len(x.cons_slot) for x in lays]
        )
        cap = np.zeros((rows, len(self.caps)), np.int64)
        cap_has = np.zeros((rows, len(self.caps)), np.bool_)
        e = cat([x.caps for x in lays], np.int64, (3,))
        at = e[:, 0] + np.repeat(first[:-1], [len(x.caps) for x in lays])
        cap[at, e[:, 1]] = e[:, 2]
        cap_has[at, e[:, 1]] = True
        self.table = df.DeviceTable(
            first,
            cat([x.kind for x in lays], np.int8),
            cat([x.attr for x in lays], np.int32, (df.N_ATTRS,)),
            cat([x.root for x in lays], np.int32),
            cat([x.multiple for x in lays], np.bool_),
            cap,
            cap_has,
            cons_first,
            cons_slot,
            cat([x.cons_amount for x in lays], np.int64),
            slot_first,
            cat([x.limit for x in lays], np.int64),
        )
        self.usage = df.DeviceUsage(
            np.zeros(rows, np.bool_),
            np.zeros(rows, np.bool_),
            np.zeros((rows, len(self.caps)), np.int64),
            np.zeros(int(slot_first[-1]), np.int64),
        )
        self.exact = np.array([x.exact for x in lays], np.bool_)

    def _write_usage(self, node: str, use: NodeUsage) -> None:
        assert self.table is not None and self.usage is not None
        lay, p = self._layouts[node], self.pos[node]
        h = self._held.get(node)
        if h is None or h.use is not use:
            h = self._held[node] = self._held_of(lay, use)
        lo, hi = int(self.table.first[p]), int(self.table.first[p + 1])
        s0, s1 = int(self.table.slot_first[p]), int(self.table.slot_first[p + 1])
        u = self.usage
        u.taken[lo:hi] = False
        u.exclusive[lo:hi] = False
        u.used_cap[lo:hi] = 0
        u.used[s0:s1] = 0
        for i in h.taken:
            u.taken[lo + i] = True
        for i in h.exclusive:
            u.exclusive[lo + i] = True
        for i, c, v in h.caps:
            u.used_cap[lo + i, c] = v
        for s, v in h.used:
            u.used[s0 + s] = v
        self.exact[p] = lay.exact and h.exact

    def positions(self, names: list[str]) -> npt.NDArray[np.int64]:
        """Each name's index in the table, -1 for a node it does not hold (kept for the last few
        name lists until the table is repacked: kube-scheduler offers the same list pod after pod)."""
        key = tuple(names)
        got = self._positions.get(key)
        if got is None:
            got = np.fromiter((self.pos.get(n, -1) for n in names), np.int64, len(names))
            if len(self._positions) >= 4:
                self._positions.pop(next(iter(self._positions)))
            self._positions[key] = got
        return got

    # ---- requests --------------------------------------------------------------------------------
    def query(self, demand: DraDemand) -> tuple[df.DeviceQuery, list[DraRequest]] | None:
        """The packed form of `demand`'s requests and the alternatives in its order; None when an
        amount is not a whole number (scheduler.dra.fit answers such a request)."""
        alts = [r for group in demand.requests for r in group]
        alt_first = np.zeros(len(demand.requests) + 1, np.int64)
        np.cumsum([len(g) for g in demand.requests], out=alt_first[1:])
        attr = np.full((len(alts), df.N_ATTRS), df.ANY, np.int32)
        cap_first = np.zeros(len(alts) + 1, np.int64)
        cap_col: list[int] = []
        cap_amount: list[int] = []
        for a, r in enumerate(alts):
            for name, value in r.attrs:
                j = ATTRS.index(name)
                want = self.values.get(value, df.NONE)
                attr[a, j] = want if attr[a, j] in (df.ANY, want) else df.NONE
            for name, amount in r.capacity:
                v = whole(amount)
                if v is None:
                    return None
                cap_col.append(self.caps.get(name, -1))
                cap_amount.append(v)
            cap_first[a + 1] = len(cap_col)
        q = df.DeviceQuery(
            alt_first,
            np.array([KINDS.get(r.kind, df.ANY) for r in alts], np.int8),
            attr,
            np.array([r.count for r in alts], np.int64),
            np.array([r.same_pcie_root for r in alts], np.bool_),
            cap_first,
            np.asarray(cap_col, np.int64),
            np.asarray(cap_amount, np.int64),
        )
        return q, alts
