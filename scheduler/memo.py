"""The extender's memos: what makes the second call for a pod, and the next pod of a shape, cheap.

- `RowMemo`: per-row results (feasibility, a policy's per-row scores) by request, patched where rows
  changed. Every cached function is row-local — its value for a row depends on that row's arrays and
  on hardware-only tables (placement_core.cluster) — so an entry computed at state version v is right
  for every row whose `row_version` ≤ v while `hw_version` and the row count stand. After a bind one row
  changed, and a lookup redoes that row instead of 5,000.
- `EvalMemo`: whole results by an exact key (request, state, version): what depends on every row at
  once (the finished scores) or is cheap to key exactly.
- `PodMemo`: the Pods filter saw, by UID (bind's source for the pod's request).
- `LRU` itself keeps the validated ExtenderArgs by the raw bytes of a body's Pod part (scheduler.http):
  filter and prioritize of one pod carry the same Pod JSON, so it is validated once.
Callers must not mutate what a memo returns: entries are shared (a patch copies before it writes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from placement_core import ClusterState
from scheduler.wire import Pod

T = TypeVar("T")
K = TypeVar("K")
Arrays = tuple[npt.NDArray, ...]  # type: ignore[type-arg]
RowsFn = Callable[[npt.NDArray[np.intp] | None], Arrays]


class LRU(Generic[K, T]):
    """A bounded LRU; size 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[K, T] = OrderedDict()

    def get(self, key: K) -> T | None:
        hit = self._d.get(key)
        if hit is not None:
            self._d.move_to_end(key)
        return hit

    def put(self, key: K, value: T) -> None:
        if self.size <= 0:
            return
        self._d[key] = value
        self._d.move_to_end(key)
        if len(self._d) > self.size:
            self._d.popitem(last=False)


class EvalMemo:
    """Results by exact key (request, state, version); size 0 turns it off."""

    def __init__(self, size: int = 16) -> None:
        self._lru: LRU[tuple[object, ...], object] = LRU(size)
        self.hits = 0

    def get(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        hit = self._lru.get(key)
        if hit is None:
            hit = compute()
            self._lru.put(key, hit)
        else:
            self.hits += 1
        return hit  # type: ignore[return-value]


@dataclass(slots=True)
class _Rows:
    state: ClusterState
    version: int
    hw_version: int
    n_rows: int
    arrays: Arrays


class RowMemo:
    """Per-row arrays by key, redone only for the rows changed since (see the module docstring).

    `compute(None)` must return arrays over all rows, `compute(rows)` the same arrays for those rows
    only, entry for entry equal to the full result there. Past `max(64, rows / 8)` changed rows a lookup
    recomputes all. Size 0 turns it off."""

    def __init__(self, size: int = 64) -> None:
        self._lru: LRU[object, _Rows] = LRU(size)
        self.hits = 0
        self.patches = 0

    def get(self, key: object, state: ClusterState, compute: RowsFn) -> Arrays:
        e = self._lru.get(key)
        n = state.n_rows
        if e is None or e.state is not state or e.hw_version != state.hw_version or e.n_rows != n:
            e = _Rows(state, state.version, state.hw_version, n, compute(None))
            self._lru.put(key, e)
            return e.arrays
        if e.version != state.version:
            changed = state.changed_rows(e.version)
            if len(changed) > max(64, n // 8):
                e.arrays = compute(None)
            elif len(changed):
                part = compute(changed)
                arrays = []
                for whole, new in zip(e.arrays, part, strict=True):
                    patched = whole.copy()
                    patched[changed] = new
                    arrays.append(patched)
                e.arrays = tuple(arrays)
                self.patches += 1
            e.version = state.version
        else:
            self.hits += 1
        return e.arrays


class PodMemo:
    """Bounded LRU of the Pods filter saw, by UID (bind's source for the pod's request)."""

    def __init__(self, size: int = 2048) -> None:
        self._lru: LRU[str, Pod] = LRU(size)

    def put(self, pod: Pod) -> None:
        if pod.metadata.uid:
            self._lru.put(pod.metadata.uid, pod)

    def get(self, uid: str) -> Pod | None:
        return self._lru.get(uid)
