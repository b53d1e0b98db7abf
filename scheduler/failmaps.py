"""Filter's answer for one (NodeNames list, request), kept and patched where the reasons changed.

Why: at 5,000 nodes most of filter's time went into building the same two maps again — FailedNodes and
FailedAndUnresolvableNodes, ~100 KB of JSON — although between two pods of one shape a bind changes
one node. So each (list, request) keeps its last answer as two flat lists of byte fragments, two
entries per offered name (`<name>` and `":"<sentence>","`, both empty when the name is not in that
map), and the reason and detail it was built from. A call compares the new reasons and details with
those (two numpy comparisons), sets the fragments of the positions that differ, and joins again; an
unchanged answer is returned as it was, so its NodeNames tail keeps one bytes object (and one hash)
for the prioritize that follows (scheduler.namelists). Past `max(64, n / 8)` changed positions it is
built from scratch, one sentence per distinct (reason, detail) pair. The answer is a pure function of
(list, request, reason, detail), which `tests/scheduler/test_memo.py` holds against a fresh build.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from placement_core import Reason
from scheduler.memo import LRU
from scheduler.namelists import NameList

UNRESOLVABLE = np.array([Reason(c).unresolvable for c in range(max(Reason) + 1)])  # by reason code
Sentence = Callable[[int, int], bytes]  # (reason, detail) → the map value fragment `":"<text>","`
_FAILED, _UNRESOLVABLE = 1, 2  # what each position is in: 0 = passes


def _codes(reason: npt.NDArray[np.int8], detail: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (reason.astype(np.int64) << 32) | (detail.astype(np.int64) & 0xFFFFFFFF)


class Answer:
    """One (list, request)'s maps as fragments, and the JSON joined from them."""

    __slots__ = (
        "_maps",
        "_sentences",
        "array_json",
        "detail",
        "failed_json",
        "kind",
        "names",
        "reason",
        "tail",
        "unresolvable_json",
    )

    def __init__(self, names: NameList) -> None:
        self.names = names
        self.reason: npt.NDArray[np.int8] | None = None
        self.detail: npt.NDArray[np.int64] | None = None
        self.kind = np.zeros(len(names), np.int8)
        self._maps: tuple[list[bytes], list[bytes]] = ([], [])  # FailedNodes, FailedAndUnresolvable
        self._sentences: dict[tuple[int, int], bytes] = {}
        self.failed_json = self.unresolvable_json = b"{}"
        self.array_json = b"[]"
        self.tail = b""

    def update(self, reason: npt.NDArray[np.int8], detail: npt.NDArray[np.int64], sentence: Sentence) -> str:
        """Bring the answer to `reason`/`detail` (one entry per offered name); says what it did:
        "kept", "patched" or "built"."""
        n = len(self.names)
        if self.reason is None or self.detail is None:
            self._build(reason, detail, sentence)
            return "built"
        changed = np.flatnonzero((reason != self.reason) | (detail != self.detail))
        if not len(changed):
            return "kept"
        if len(changed) > max(64, n // 8):
            self._build(reason, detail, sentence)
            return "built"
        failed, unres = self._maps
        frags = self.names.frags
        touched = np.zeros(3, np.bool_)
        for i, r, d in zip(changed.tolist(), reason[changed].tolist(), detail[changed].tolist(), strict=True):
            kind = 0 if r == 0 else (_UNRESOLVABLE if UNRESOLVABLE[r] else _FAILED)
            touched[self.kind[i]] = touched[kind] = True
            self.kind[i] = kind
            for m, k in ((failed, _FAILED), (unres, _UNRESOLVABLE)):
                m[2 * i], m[2 * i + 1] = (
                    (frags[i], self._sentence(r, d, sentence)) if kind == k else (b"", b"")
                )
        self.reason, self.detail = reason.copy(), detail.copy()
        self._join(
            ok_changed=bool(touched[0]), failed=bool(touched[_FAILED]), unres=bool(touched[_UNRESOLVABLE])
        )
        return "patched"

    def _sentence(self, r: int, d: int, sentence: Sentence) -> bytes:
        v = self._sentences.get((r, d))
        if v is None:
            v = self._sentences[(r, d)] = sentence(r, d)
        return v

    def _build(self, reason: npt.NDArray[np.int8], detail: npt.NDArray[np.int64], sentence: Sentence) -> None:
        n = len(self.names)
        fail = np.flatnonzero(reason != 0)
        uniq, inv = np.unique(_codes(reason[fail], detail[fail]), return_inverse=True)
        values = np.empty(len(uniq), object)
        values[:] = [self._sentence(c >> 32, _signed(c & 0xFFFFFFFF), sentence) for c in uniq.tolist()]
        unres = UNRESOLVABLE[uniq >> 32][inv]
        self.kind = np.zeros(n, np.int8)
        self.kind[fail] = np.where(unres, _UNRESOLVABLE, _FAILED)
        maps = []
        for which in (~unres, unres):
            both = np.full(2 * n, b"", object)
            at = fail[which]
            both[2 * at] = self.names.frags[at]
            both[2 * at + 1] = values[inv[which]]
            maps.append(both.tolist())
        self._maps = (maps[0], maps[1])
        self.reason, self.detail = reason.copy(), detail.copy()
        self._join(ok_changed=True, failed=True, unres=True)

    def _join(self, *, ok_changed: bool, failed: bool, unres: bool) -> None:
        for m, k, on in ((0, _FAILED, failed), (1, _UNRESOLVABLE, unres)):
            if not on:
                continue
            text = b'{"' + b"".join(self._maps[m])[:-2] + b"}" if (self.kind == k).any() else b"{}"
            if m == 0:
                self.failed_json = text
            else:
                self.unresolvable_json = text
        if ok_changed:
            self.array_json = self.names.json_array(self.kind == 0)
            self.tail = b""  # set by the caller (NameLists.tail_of) once, for this array


def _signed(detail: int) -> int:
    """A detail's low 32 bits back to the signed int32 the kernel wrote."""
    return detail - (1 << 32) if detail >= 1 << 31 else detail


class Answers:
    """Bounded LRU of `Answer`s by (list, request); a list evicted from NameLists is a new object."""

    def __init__(self, size: int = 64) -> None:
        self._lru: LRU[tuple[int, object], Answer] = LRU(size)
        self.patches = 0
        self.kept = 0

    def update(
        self,
        names: NameList,
        req: object,
        reason: npt.NDArray[np.int8],
        detail: npt.NDArray[np.int64],
        sentence: Sentence,
    ) -> Answer:
        """The answer for (names, req), brought to `reason`/`detail`."""
        key = (id(names), req)
        a = self._lru.get(key)
        if a is None or a.names is not names:
            a = Answer(names)
            self._lru.put(key, a)
        did = a.update(reason, detail, sentence)
        self.patches += did == "patched"
        self.kept += did == "kept"
        return a
