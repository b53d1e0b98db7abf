"""The filter/prioritize hot path: NodeNames lists recognised by their raw bytes, encoded from fragments.

Why: with nodeCacheCapable, kube-scheduler sends the same 5,000 names (~90 KB) on every filter call,
and on the following prioritize exactly the names our filter returned, in our order. Parsing them into
5,000 str objects, mapping each to a row and building 5,000 response dicts cost more than the placement
kernels themselves (CONTEXT.md: ~2.3 ms of an 8.6 ms pair). So a `NameList` remembers, per distinct
list: the row of every name (re-derived only when nodes are added or removed), each name's escaped
JSON text *without* its quotes — the quotes travel in the separators, so a response is one
`bytes.join` over a numpy object array, never one new object per node — and for prioritize a response
template whose two score digits per host are patched in place.

Recognising a list without parsing it: Go encodes ExtenderArgs fields in declaration order, so the body
ends with `"NodeNames":[…]}`. We look that tail up byte-for-byte among tails we have parsed and validated
before. A hit is sound: a validated tail holds only a string array followed by exactly one `}`, so it
can only be the top-level key; the rest of the body (the Pod) is then parsed on its own. A miss (or a
client that orders keys differently) takes the ordinary full parse, which registers the tail.
The tail starts at the first `"NodeNames":` (the Pod comes first and is small; a Pod that holds such a
key only makes its calls miss), and tails are indexed by their length and two 64-byte samples, then
compared in full: hashing a new 100 KB tail on every call cost more than the comparison.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson

_KEY = b'"NodeNames":'
_HOST_SEP = b'","Score":00},{"Host":"'  # between two hosts' fragments in the prioritize template
_TENS = np.frombuffer(b"           1", np.uint8)[[*range(10), 11]]  # 0..9 → ' ', 10 → '1'
_ONES = np.frombuffer(b"01234567890", np.uint8)  # score → last digit (10 → '0')
IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]


def _fragments(names: Sequence[str]) -> list[bytes]:
    """Each name's JSON string body (escaped, no quotes). One orjson call and one C-level split when no
    name needs escaping (always, for real node names); per-name json.dumps otherwise."""
    buf = orjson.dumps(list(names))
    if not names:
        return []
    if b"\\" not in buf:
        return buf[2:-2].split(b'","')
    return [json.dumps(n, ensure_ascii=False)[1:-1].encode() for n in names]


class NameList:
    """One NodeNames list: names, unquoted JSON fragments, rows in the ClusterState (valid for `gen`)."""

    __slots__ = ("_lens", "_offsets", "_template", "all_known", "frags", "gen", "names", "rows")

    def __init__(self, names: ObjArray, frags: ObjArray, lens: IntArray | None = None) -> None:
        self.names = names
        self.frags = frags
        self.rows: IntArray = np.empty(0, np.int64)
        self.all_known = False  # every name has a row (as of `gen`)
        self.gen = -1
        self._lens = lens
        self._template: npt.NDArray[np.uint8] | None = None
        self._offsets: IntArray | None = None

    @classmethod
    def of(cls, names: Sequence[str]) -> NameList:
        arr = np.empty(len(names), object)
        arr[:] = list(names)
        frags = np.empty(len(names), object)
        frags[:] = _fragments(names)
        return cls(arr, frags)

    def __len__(self) -> int:
        return len(self.names)

    def resolve(self, index: dict[str, int], gen: int) -> IntArray:
        """Rows for the names (−1 = unknown node); recomputed only when the index generation changed."""
        if self.gen != gen:
            self.rows = np.fromiter(
                map(index.get, self.names.tolist(), [-1] * len(self.names)), np.int64, len(self.names)
            )
            self.all_known = bool((self.rows >= 0).all())
            self.gen = gen
        return self.rows

    def lens(self) -> IntArray:
        if self._lens is None:
            self._lens = np.fromiter(map(len, self.frags.tolist()), np.int64, len(self.frags))
        return self._lens

    def subset(self, mask: npt.NDArray[np.bool_]) -> NameList:
        child = NameList(self.names[mask], self.frags[mask], self.lens()[mask])
        if self.gen >= 0:  # resolved rows carry over; an unresolved parent leaves the child unresolved
            child.rows, child.gen = self.rows[mask], self.gen
            child.all_known = bool((child.rows >= 0).all())
        return child

    def json_array(self, mask: npt.NDArray[np.bool_] | None = None) -> bytes:
        f = self.frags if mask is None else self.frags[mask]
        return b'["' + b'","'.join(f.tolist()) + b'"]' if len(f) else b"[]"

    def json_map(self, which: IntArray, values: ObjArray) -> bytes:
        """`{"name": value, …}` for names at positions `which`; each value fragment is `":<json>,"`."""
        if not len(which):
            return b"{}"
        both = np.empty(2 * len(which), object)
        both[0::2] = self.frags[which]
        both[1::2] = values
        return b'{"' + b"".join(both.tolist())[:-2] + b"}"

    # ---- prioritize --------------------------------------------------------------------------------
    def priorities_json(self, scores: npt.NDArray[np.int64]) -> bytes:
        """`[{"Host":…,"Score": 7},…]` for scores 0..10 (a space pads one-digit scores: valid JSON)."""
        if not len(self.frags):
            return b"[]"
        if self._template is None:
            text = b'[{"Host":"' + _HOST_SEP.join(self.frags.tolist()) + b'","Score":00}]'
            self._template = np.frombuffer(text, np.uint8).copy()
            # entry i is {"Host":"<frag>","Score":DD} (len + 22 bytes) plus one separator byte
            self._offsets = np.cumsum(self.lens() + 23) - 3
        assert self._offsets is not None
        buf = self._template.copy()
        s = np.clip(scores, 0, 10)
        buf[self._offsets] = _TENS[s]
        buf[self._offsets + 1] = _ONES[s]
        return buf.tobytes()


class NameLists:
    """Bounded LRU of NameLists by raw tail bytes (fast path) and by name tuple (full-parse path)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._by_tail: OrderedDict[tuple[int, bytes, bytes], list[tuple[bytes, NameList]]] = OrderedDict()
        self._by_names: OrderedDict[tuple[str, ...], NameList] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def split(body: bytes) -> tuple[bytes, bytes] | None:
        """(tail, pod-only body) when the body has a NodeNames member (the tail from its first one)."""
        i = body.find(_KEY)
        if i < 0:
            return None
        return body[i:].rstrip(), body[:i] + _KEY + b"null}"

    @staticmethod
    def _fingerprint(tail: bytes) -> tuple[int, bytes, bytes]:
        m = len(tail) // 2
        return len(tail), tail[m - 32 : m + 32], tail[-64:]

    def lookup_tail(self, tail: bytes) -> NameList | None:
        fp = self._fingerprint(tail)
        for known, nl in self._by_tail.get(fp, ()):
            if known == tail:
                self._by_tail.move_to_end(fp)
                self.hits += 1
                return nl
        self.misses += 1
        return None

    def _put_tail(self, tail: bytes, nl: NameList) -> None:
        fp = self._fingerprint(tail)
        same = [(t, n) for t, n in self._by_tail.get(fp, ()) if t != tail]
        self._put(self._by_tail, fp, [(tail, nl), *same][:4])

    def for_names(self, names: list[str], body_tail: bytes | None = None) -> NameList:
        """The NameList of a parsed (validated) list; registers its raw tail when it is canonical."""
        key = tuple(names)
        nl = self._by_names.get(key)
        if nl is None:
            nl = NameList.of(names)
            self._put(self._by_names, key, nl)
        else:
            self._by_names.move_to_end(key)
        if body_tail is not None and body_tail == self.tail_of(nl):
            self._put_tail(body_tail, nl)
        return nl

    @staticmethod
    def tail_of(nl: NameList, mask: npt.NDArray[np.bool_] | None = None) -> bytes:
        return _KEY + nl.json_array(mask) + b"}"

    @staticmethod
    def output_tail(array_json: bytes) -> bytes:
        return _KEY + array_json + b"}"

    def register_output(self, parent: NameList, mask: npt.NDArray[np.bool_], tail: bytes) -> None:
        """Remember the list our filter returned (`tail` = output_tail of its JSON): the following
        prioritize sends exactly it."""
        if self.lookup_tail(tail) is None:
            self.misses -= 1  # not a request's miss
            self._put_tail(tail, parent.subset(mask))

    def _put(self, d: OrderedDict, key: object, value: object) -> None:  # type: ignore[type-arg]
        d[key] = value
        if len(d) > self._size:
            d.popitem(last=False)
