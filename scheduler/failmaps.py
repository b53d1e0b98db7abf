"""Filter's answer for one (NodeNames list, request), kept and patched where the reasons changed.

Why: at 5,000 nodes most of filter's time went into building the same two maps again — FailedNodes and
FailedAndUnresolvableNodes, ~100 KB of JSON — although between two pods of one shape a bind changes
one node. So each (list, request) keeps its last answer as two joined byte strings of fragments, two
per offered name (`<name>` and `":"<sentence>","`, both empty when the name is not in that map), the
fragments' lengths, and the reason and detail it was built from. A call compares the new reasons and
details with those (two numpy comparisons) and splices the fragments of the positions that differ into
the joined bytes (one copy of the rest, not a join of 10,000 fragments); an unchanged answer is returned as it was, so its NodeNames tail keeps one bytes object (and one hash)
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
        "_inner",
        "_lens",
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
        # per map (FailedNodes, FailedAndUnresolvable): the joined fragments, and each fragment's length
        self._inner: list[bytes] = [b"", b""]
        self._lens: list[npt.NDArray[np.int32]] = [np.zeros(0, np.int32), np.zeros(0, np.int32)]
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
        frags = self.names.frags
        touched = np.zeros(3, np.bool_)
        news: list[list[tuple[int, bytes, bytes]]] = [[], []]  # per map: (position, name, value)
        for i, r, d in zip(changed.tolist(), reason[changed].tolist(), detail[changed].tolist(), strict=True):
            kind = 0 if r == 0 else (_UNRESOLVABLE if UNRESOLVABLE[r] else _FAILED)
            touched[self.kind[i]] = touched[kind] = True
            self.kind[i] = kind
            for m, k in ((0, _FAILED), (1, _UNRESOLVABLE)):
                news[m].append((i, frags[i], self._sentence(r, d, sentence)) if kind == k else (i, b"", b""))
        for m in (0, 1):
            if touched[m + 1]:
                self._splice(m, news[m])
        self.reason, self.detail = reason.copy(), detail.copy()
        self._join(
            ok_changed=bool(touched[0]), failed=bool(touched[_FAILED]), unres=bool(touched[_UNRESOLVABLE])
        )
        return "patched"

    def _splice(self, m: int, news: list[tuple[int, bytes, bytes]]) -> None:
        """Replace the fragments of some positions (ascending) in map m's joined bytes: one copy of the
        unchanged stretches instead of joining 2n fragments again."""
        lens = self._lens[m]
        ends = np.cumsum(lens, dtype=np.int64)
        old = memoryview(self._inner[m])
        parts: list[bytes | memoryview] = []
        prev = 0
        for i, name, value in news:
            start, stop = int(ends[2 * i] - lens[2 * i]), int(ends[2 * i + 1])
            parts += (old[prev:start], name, value)
            prev = stop
            lens[2 * i], lens[2 * i + 1] = len(name), len(value)
        parts.append(old[prev:])
        self._inner[m] = b"".join(parts)

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
        value_lens = np.array([len(v) for v in values.tolist()], np.int64)
        unres = UNRESOLVABLE[uniq >> 32][inv]
        self.kind = np.zeros(n, np.int8)
        self.kind[fail] = np.where(unres, _UNRESOLVABLE, _FAILED)
        for m, which in enumerate((~unres, unres)):
            both = np.full(2 * n, b"", object)
            lens = np.zeros(2 * n, np.int32)
            at = fail[which]
            both[2 * at] = self.names.frags[at]
            both[2 * at + 1] = values[inv[which]]
            lens[2 * at] = self.names.lens()[at]
            lens[2 * at + 1] = value_lens[inv[which]]
            self._inner[m] = b"".join(both.tolist())
            self._lens[m] = lens
        self.reason, self.detail = reason.copy(), detail.copy()
        self._join(ok_changed=True, failed=True, unres=True)

    def _join(self, *, ok_changed: bool, failed: bool, unres: bool) -> None:
        for m, k, on in ((0, _FAILED, failed), (1, _UNRESOLVABLE, unres)):
            if not on:
                continue
            inner = memoryview(self._inner[m])
            text = b"".join((b'{"', inner[:-2], b"}")) if (self.kind == k).any() else b"{}"
            if m == 0:
                self.failed_json = text
            else:
                self.unresolvable_json = text
        if ok_changed:
            self.array_json = self.names.json_array(self.kind == 0)
            self.tail = b""  # set by the caller (NameLists.output_tail) once, for this array


def _signed(detail: int) -> int:
    """A detail's low 32 bits back to the signed int32 the kernel wrote."""
    return detail - (1 << 32) if detail >= 1 << 31 else detail


class Answers:
    """Bounded LRU of `Answer`s by (list, request); a list evicted from NameLists is a new object. An
    answer at 5,000 nodes holds ~0.4 MB, hence the small default."""

    def __init__(self, size: int = 24) -> None:
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
