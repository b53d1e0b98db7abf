"""Structured device fit: can a node's free published devices serve a pod's device requests, and how well.

The packed form of DRA (resource.k8s.io/v1) devices and requests that the extender's filter and
prioritize scan for every offered node; the scheduler (scheduler.dra.packed) builds it from
ResourceSlices and allocated ResourceClaims, and scheduler.dra.fit keeps the per-node greedy rules this
computes (it is the reference the packed path is held equal to). What is packed:

- `DeviceTable`: every node's devices as rows (node `n` owns rows `first[n]:first[n+1]`, in the order
  the greedy pass takes them), with the few things a request looks at — its kind (whole GPU, MIG
  device, other), the ids of the attribute values a selector can compare, its PCIe root's rank among
  the node's roots (sorted by name, so a tie between equally free roots goes to the first name),
  `allowMultipleAllocations`, its capacities, and the shared counters it consumes (CSR over counter
  slots; node `n` owns slots `slot_first[n]:slot_first[n+1]`);
- `DeviceUsage`: what the node's allocated claims hold — devices taken, taken without a share, the
  capacity consumed of each, the counters used;
- `DeviceQuery`: the pod's requests, each a run of alternatives (firstAvailable) tried in order.

Quantities are int64: the scheduler packs only whole numbers below 2**56 and leaves any other node or
request to the reference (so sums of a few never overflow and compare exactly as Decimals do).

`fit_nodes` runs `fit_kernel` (Numba) or `fit_twin` (plain Python, the statement of what is computed)
and returns per node: ok, the PCIe fit (product over PCIe-constrained requests of needed / free in the
root chosen), and for a node that does not fit the failing alternative, the code of its rule and the
counts its sentence quotes (for "no root has room", the free devices of each root).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

# device kinds
OTHER, GPU, MIG = 0, 1, 2
N_ATTRS = 3  # profile, productName, type: the attributes a selector may compare
ANY = -1  # query attribute: no constraint
NONE = -2  # query attribute: a value no device has (or two different values asked for one attribute)

# outcome codes
FITS = 0
NO_DEVICES = 1  # the node publishes none
ALL_NOT_FREE = 2  # allocationMode All: not every matching device is free (or none matches)
TOO_FEW = 3  # ExactCount: fewer free matching devices than asked
NO_ROOT = 4  # ExactCount under one PCIe root: no root has enough free

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DeviceTable:
    first: I64  # [nodes + 1] device rows of each node
    kind: npt.NDArray[np.int8]  # [rows] OTHER / GPU / MIG
    attr: npt.NDArray[np.int32]  # [rows, N_ATTRS] value ids
    root: npt.NDArray[np.int32]  # [rows] rank of the PCIe root among the node's roots; -1: none
    multiple: npt.NDArray[np.bool_]  # [rows] allowMultipleAllocations
    cap: I64  # [rows, capacities] amount
    cap_has: npt.NDArray[np.bool_]  # [rows, capacities] published
    cons_first: I64  # [rows + 1] counter consumptions of each device
    cons_slot: I64  # [consumptions] counter slot
    cons_amount: I64  # [consumptions]
    slot_first: I64  # [nodes + 1] counter slots of each node
    limit: I64  # [slots] the pool's sharedCounters value (0 when the set does not publish it)


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    taken: npt.NDArray[np.bool_]  # [rows] held by some claim
    exclusive: npt.NDArray[np.bool_]  # [rows] held by a result without a shareID
    used_cap: I64  # [rows, capacities] consumedCapacity summed over the shares
    used: I64  # [slots] counters used


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    alt_first: I64  # [requests + 1] alternatives of each request, in order
    kind: npt.NDArray[np.int8]  # [alts] GPU / MIG, ANY: a device class of another type
    attr: npt.NDArray[np.int32]  # [alts, N_ATTRS] ANY, NONE or the id a device must have
    count: I64  # [alts] 0: All
    pcie: npt.NDArray[np.bool_]  # [alts] devices from one PCIe root
    cap_first: I64  # [alts + 1] capacity requests of each alternative
    cap_col: I64  # [capacity requests] capacity column; -1: a capacity no device publishes
    cap_amount: I64  # [capacity requests]


@dataclass(frozen=True, slots=True)
class FitRows:
    ok: npt.NDArray[np.bool_]
    pcie_fit: npt.NDArray[np.float64]
    code: npt.NDArray[np.int8]
    alt: I64  # the alternative whose rule failed (the last one tried), -1 when ok
    n_ok: I64  # free matching devices it saw
    n_match: I64  # matching devices it saw
    spread: I64  # [nodes, 1 + roots] for NO_ROOT: free matching devices without a root, then per root rank


def _rows(t: DeviceTable, m: int) -> FitRows:
    width = 1 + (int(t.root.max()) + 1 if len(t.root) else 0)
    return FitRows(
        np.zeros(m, np.bool_),
        np.zeros(m, np.float64),
        np.zeros(m, np.int8),
        np.full(m, -1, np.int64),
        np.zeros(m, np.int64),
        np.zeros(m, np.int64),
        np.zeros((m, width), np.int64),
    )


# ---- the twin: what is computed ------------------------------------------------------------------


def fit_twin(t: DeviceTable, u: DeviceUsage, q: DeviceQuery, nodes: I64) -> FitRows:
    """For each node index in `nodes` (-1: a node without devices), the greedy pass over the requests."""
    out = _rows(t, len(nodes))
    for i, n in enumerate(nodes.tolist()):
        if n < 0:
            out.code[i] = NO_DEVICES
            continue
        ok, pfit, code, alt, n_ok, n_match, spread = _node_twin(t, u, q, n)
        out.ok[i], out.pcie_fit[i], out.code[i] = ok, pfit, code
        out.alt[i], out.n_ok[i], out.n_match[i] = alt, n_ok, n_match
        for rk, k in spread.items():
            out.spread[i, 1 + rk] = k
    return out


def _node_twin(
    t: DeviceTable, u: DeviceUsage, q: DeviceQuery, n: int
) -> tuple[bool, float, int, int, int, int, dict[int, int]]:
    rows = range(int(t.first[n]), int(t.first[n + 1]))
    taken: set[int] = set()  # devices this pass took whole
    consumed: dict[tuple[int, int], int] = {}  # (device, capacity) this pass consumed
    counted: dict[int, int] = {}  # counter slot → what this pass used

    def counter_room(d: int) -> bool:
        for j in range(int(t.cons_first[d]), int(t.cons_first[d + 1])):
            s = int(t.cons_slot[j])
            if u.used[s] + counted.get(s, 0) + t.cons_amount[j] > t.limit[s]:
                return False
        return True

    def caps(a: int) -> list[tuple[int, int]]:
        return [(int(q.cap_col[j]), int(q.cap_amount[j])) for j in range(q.cap_first[a], q.cap_first[a + 1])]

    def usable(d: int, a: int) -> bool:
        if d in taken or not counter_room(d):
            return False
        wants = caps(a)
        if not u.taken[d]:
            return not wants or bool(t.multiple[d])
        if not t.multiple[d] or u.exclusive[d] or not wants:
            return False
        return all(
            c >= 0 and t.cap_has[d, c] and u.used_cap[d, c] + consumed.get((d, c), 0) + amount <= t.cap[d, c]
            for c, amount in wants
        )

    def matches(d: int, a: int) -> bool:
        return q.kind[a] in (ANY, t.kind[d]) and all(
            q.attr[a, k] in (ANY, t.attr[d, k]) for k in range(N_ATTRS)
        )

    def take(d: int, a: int) -> None:
        wants = caps(a)
        if wants and t.multiple[d]:
            for c, amount in wants:
                consumed[(d, c)] = consumed.get((d, c), 0) + amount
        else:
            taken.add(d)
        for j in range(int(t.cons_first[d]), int(t.cons_first[d + 1])):
            s = int(t.cons_slot[j])
            counted[s] = counted.get(s, 0) + int(t.cons_amount[j])

    pfit = 1.0
    spread: dict[int, int] = {}  # for NO_ROOT: free matching devices per root rank, -1: without a root
    for r in range(len(q.alt_first) - 1):
        failed = None
        for a in range(int(q.alt_first[r]), int(q.alt_first[r + 1])):
            match = [d for d in rows if matches(d, a)]
            free = [d for d in match if usable(d, a)]
            count = int(q.count[a])
            got: list[int] = []
            if count == 0:  # All: every matching device, all of them free
                if match and len(free) == len(match):
                    got = free
                else:
                    failed = (ALL_NOT_FREE, a, len(free), len(match))
            elif not q.pcie[a]:
                if len(free) >= count:
                    got = free[:count]
                else:
                    failed = (TOO_FEW, a, len(free), len(match))
            else:
                by_root: dict[int, list[int]] = {}
                for d in free:
                    if t.root[d] >= 0:
                        by_root.setdefault(int(t.root[d]), []).append(d)
                fitting = sorted((len(v), root) for root, v in by_root.items() if len(v) >= count)
                if fitting:
                    size, root = fitting[0]
                    got = by_root[root][:count]
                    pfit *= count / size
                else:
                    failed = (NO_ROOT, a, len(free), len(match))
                    spread = {root: len(v) for root, v in by_root.items()}
                    spread[-1] = len(free) - sum(spread.values())
            if got:
                for d in got:
                    take(d, a)
                failed = None
                break
        if failed is not None:
            code, a, n_ok, n_match = failed
            return False, 0.0, code, a, n_ok, n_match, spread if code == NO_ROOT else {}
    return True, pfit, FITS, -1, 0, 0, {}


# ---- the kernel: the same pass, compiled -----------------------------------------------------------


@njit(cache=True, nogil=True)
def fit_kernel(t_first, t_kind, t_attr, t_root, t_multiple, t_cap, t_cap_has, cons_first, cons_slot,
               cons_amount, slot_first, limit, u_taken, u_exclusive, u_used_cap, u_used, q_alt_first,
               q_kind, q_attr, q_count, q_pcie, q_cap_first, q_cap_col, q_cap_amount, nodes,
               out_ok, out_pfit, out_code, out_alt, out_n_ok, out_n_match, out_spread):  # fmt: skip
    """`fit_twin` over the arrays of DeviceTable, DeviceUsage, DeviceQuery, writing FitRows' arrays."""
    width = 1
    for n in range(len(t_first) - 1):
        width = max(width, t_first[n + 1] - t_first[n])
    n_caps = t_cap.shape[1]
    taken = np.zeros(len(t_kind), np.bool_)
    counted = np.zeros(len(limit), np.int64)
    consumed = np.zeros((width, max(n_caps, 1)), np.int64)
    free = np.empty(width, np.int64)
    n_roots = np.zeros(width + 1, np.int64)
    for i in range(len(nodes)):
        n = nodes[i]
        out_alt[i] = -1
        out_ok[i] = False
        out_pfit[i] = 0.0
        out_n_ok[i] = 0
        out_n_match[i] = 0
        if n < 0:
            out_code[i] = NO_DEVICES
            continue
        lo, hi = t_first[n], t_first[n + 1]
        for d in range(lo, hi):
            taken[d] = False
        consumed[: hi - lo, :] = 0
        for s in range(slot_first[n], slot_first[n + 1]):
            counted[s] = 0
        pfit = 1.0
        code = FITS
        for r in range(len(q_alt_first) - 1):
            code = FITS
            for a in range(q_alt_first[r], q_alt_first[r + 1]):
                wants = q_cap_first[a + 1] > q_cap_first[a]
                n_match = 0
                n_free = 0
                for d in range(lo, hi):
                    if q_kind[a] != ANY and t_kind[d] != q_kind[a]:
                        continue
                    same = True
                    for k in range(N_ATTRS):
                        if q_attr[a, k] != ANY and q_attr[a, k] != t_attr[d, k]:
                            same = False
                    if not same:
                        continue
                    n_match += 1
                    usable = not taken[d]  # (written out here: a helper taking the arrays costs 100x)
                    for j in range(cons_first[d], cons_first[d + 1]):
                        s = cons_slot[j]
                        if u_used[s] + counted[s] + cons_amount[j] > limit[s]:
                            usable = False
                    if usable and u_taken[d]:
                        usable = t_multiple[d] and not u_exclusive[d] and wants
                        for j in range(q_cap_first[a], q_cap_first[a + 1]):
                            c = q_cap_col[j]
                            if (
                                c < 0
                                or not t_cap_has[d, c]
                                or u_used_cap[d, c] + consumed[d - lo, c] + q_cap_amount[j] > t_cap[d, c]
                            ):
                                usable = False
                    elif usable:
                        usable = t_multiple[d] or not wants
                    if usable:
                        free[n_free] = d
                        n_free += 1
                count = q_count[a]
                start, got = 0, 0
                if count == 0:
                    if n_match > 0 and n_free == n_match:
                        got = n_free
                    else:
                        code = ALL_NOT_FREE
                elif not q_pcie[a]:
                    if n_free >= count:
                        got = count
                    else:
                        code = TOO_FEW
                else:
                    n_roots[:] = 0
                    top = -1
                    for j in range(n_free):
                        rk = t_root[free[j]]
                        if rk >= 0:
                            n_roots[rk] += 1
                            top = max(top, rk)
                    best = -1
                    for rk in range(top + 1):
                        if n_roots[rk] >= count and (best < 0 or n_roots[rk] < n_roots[best]):
                            best = rk
                    if best < 0:
                        code = NO_ROOT
                        out_spread[i, :] = 0
                        rooted = 0
                        for rk in range(top + 1):
                            out_spread[i, 1 + rk] = n_roots[rk]
                            rooted += n_roots[rk]
                        out_spread[i, 0] = n_free - rooted
                    else:
                        pfit *= count / n_roots[best]
                        k = 0  # keep this root's first `count` free devices, in row order
                        for j in range(n_free):
                            if t_root[free[j]] == best and k < count:
                                free[k] = free[j]
                                k += 1
                        got = count
                if got > 0:
                    for j in range(start, got):
                        d = free[j]
                        if wants and t_multiple[d]:
                            for c_j in range(q_cap_first[a], q_cap_first[a + 1]):
                                c = q_cap_col[c_j]
                                if c >= 0:
                                    consumed[d - lo, c] += q_cap_amount[c_j]
                        else:
                            taken[d] = True
                        for j2 in range(cons_first[d], cons_first[d + 1]):
                            counted[cons_slot[j2]] += cons_amount[j2]
                    code = FITS
                    break
                out_alt[i] = a
                out_n_ok[i] = n_free
                out_n_match[i] = n_match
            if code != FITS:
                break
        out_code[i] = code
        if code != NO_ROOT:
            out_spread[i, :] = 0
        if code == FITS:
            out_ok[i] = True
            out_pfit[i] = pfit
            out_alt[i] = -1
            out_n_ok[i] = 0
            out_n_match[i] = 0


def fit_nodes(t: DeviceTable, u: DeviceUsage, q: DeviceQuery, nodes: I64, *, twin: bool = False) -> FitRows:
    """Per entry of `nodes` (table node indices; -1 for a node without devices) whether the requests fit."""
    if twin:
        return fit_twin(t, u, q, nodes)
    out = _rows(t, len(nodes))
    fit_kernel(
        t.first, t.kind, t.attr, t.root, t.multiple, t.cap, t.cap_has, t.cons_first, t.cons_slot,
        t.cons_amount, t.slot_first, t.limit, u.taken, u.exclusive, u.used_cap, u.used, q.alt_first,
        q.kind, q.attr, q.count, q.pcie, q.cap_first, q.cap_col, q.cap_amount, np.asarray(nodes, np.int64),
        out.ok, out.pcie_fit, out.code, out.alt, out.n_ok, out.n_match, out.spread,
    )  # fmt: skip
    return out


def warmup() -> None:
    """Compile (or load) `fit_kernel` with the argument types scheduler.dra.packed passes: one node of
    two shareable GPUs on one PCIe root consuming one counter, and a query for 1 GPU with capacity."""
    t = DeviceTable(
        np.array([0, 2], np.int64),
        np.array([GPU, GPU], np.int8),
        np.zeros((2, N_ATTRS), np.int32),
        np.zeros(2, np.int32),
        np.ones(2, np.bool_),
        np.full((2, 1), 4, np.int64),
        np.ones((2, 1), np.bool_),
        np.array([0, 1, 2], np.int64),
        np.zeros(2, np.int64),
        np.ones(2, np.int64),
        np.array([0, 1], np.int64),
        np.array([2], np.int64),
    )
    u = DeviceUsage(
        np.zeros(2, np.bool_), np.zeros(2, np.bool_), np.zeros((2, 1), np.int64), np.zeros(1, np.int64)
    )
    q = DeviceQuery(
        np.array([0, 1], np.int64),
        np.array([GPU], np.int8),
        np.full((1, N_ATTRS), ANY, np.int32),
        np.ones(1, np.int64),
        np.ones(1, np.bool_),
        np.array([0, 1], np.int64),
        np.zeros(1, np.int64),
        np.ones(1, np.int64),
    )
    fit_nodes(t, u, q, np.array([0, -1], np.int64))
