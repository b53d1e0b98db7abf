"""The annotations gpuplace reads and writes on pods, and the `gpuplace.io/gpus` placement record.

Why a record on the pod at all: kube-scheduler has no Reserve/Permit for extenders, so gpuplace binds
pods itself and must leave the exact GPU choice somewhere durable. The pod is that place: the choice
survives a gpuplace restart (the cache rebuilds every allocation from the pods it lists), a device
plugin can honour it, and a person can read it with `kubectl get pod -o yaml`.

`gpuplace.io/gpus` (written by bind, in the Binding itself: the API server merges it into the pod in the
same update that sets spec.nodeName, so a pod carries it exactly when gpuplace bound it):

    {"v":1,"node":"gpu-7","gpus":[0,1],"milli":1000,"mig":[],"uuids":["GPU-…","GPU-…"]}

- `gpus`: GPU indices on the node (whole GPUs, or the one GPU of a fractional share); `milli`: per GPU
  (1000 = whole; < 1000 = a time-sliced share of `gpus[0]`).
- `mig`: `[gpu index, instance slot]` pairs; the slot is the instance's position in that GPU's `mig`
  list in the node's `gpuplace.io/gpu-topology` annotation (or in the synthesised layout).
- `uuids`: GPU (or MIG device) UUIDs when the node published them, else `[]`.
`gpuplace.io/gpu-uuids`: the same UUIDs comma-separated, the form device plugins take for
`NVIDIA_VISIBLE_DEVICES`. See scheduler/README.md for who honours what.

`gpuplace.io/binding` (written by bind BEFORE it sends the Binding, with the pod's UID as a
precondition): the evidence that a Binding carrying that record may be on its way, for whichever
process serves next (scheduler.inflight):

    {"v":1,"record":{…the gpuplace.io/gpus value…},"timeout_seconds":20,"holder":"gpuplace-7d9f/1","sent":"2026-…Z"}

- `timeout_seconds`: the `?timeout=` the Binding carries (kube-apiserver's deadline for it, capped by
  its --request-timeout); `holder` and `sent` (the writer's wall clock) are for people reading the pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from placement_core import WHOLE, Placement


@dataclass(frozen=True, slots=True)
class Keys:
    """Annotation and label names under one prefix (default `gpuplace.io/`)."""

    prefix: str = "gpuplace.io/"

    @property
    def gpus(self) -> str:
        return f"{self.prefix}gpus"

    @property
    def binding(self) -> str:
        return f"{self.prefix}binding"

    @property
    def gpu_uuids(self) -> str:
        return f"{self.prefix}gpu-uuids"

    @property
    def gpu_milli(self) -> str:
        return f"{self.prefix}gpu-milli"

    @property
    def gpu_models(self) -> str:
        return f"{self.prefix}gpu-models"

    @property
    def gpu_memory_mib(self) -> str:
        return f"{self.prefix}gpu-memory-mib"

    @property
    def nvlink(self) -> str:
        return f"{self.prefix}nvlink"

    @property
    def topology(self) -> str:
        return f"{self.prefix}gpu-topology"

    @property
    def rack_label(self) -> str:
        return f"{self.prefix}rack"


class RecordError(ValueError):
    """A `gpuplace.io/gpus` value that cannot be read."""


def encode_record(p: Placement, uuids: list[str]) -> str:
    """The `gpuplace.io/gpus` value for placement `p`."""
    body = {
        "v": 1,
        "node": p.node,
        "gpus": list(p.gpus),
        "milli": p.milli,
        "mig": [list(x) for x in p.mig],
        "uuids": uuids,
    }
    return orjson.dumps(body).decode()


@dataclass(frozen=True, slots=True)
class Record:
    node: str
    gpus: tuple[int, ...]
    milli: int
    mig: tuple[tuple[int, int], ...]
    uuids: tuple[str, ...]

    def placement(self, cpu_milli: int, memory_mib: int) -> Placement:
        return Placement(
            node=self.node,
            gpus=self.gpus,
            milli=self.milli,
            mig=self.mig,
            cpu_milli=cpu_milli,
            memory_mib=memory_mib,
        )


def _ints(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v
    ):
        raise RecordError(f"{what} must be a list of non-negative integers")
    return tuple(v)


def decode_record(value: str) -> Record:
    """Parse a `gpuplace.io/gpus` value; RecordError says what is wrong."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise RecordError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise RecordError("not a JSON object")
    if d.get("v", 1) != 1:
        raise RecordError(f"unsupported version {d.get('v')!r}")
    node = d.get("node")
    if not isinstance(node, str) or not node:
        raise RecordError("node must be a non-empty string")
    gpus = _ints(d.get("gpus", []), "gpus")
    milli = d.get("milli", WHOLE)
    if not isinstance(milli, int) or not 0 < milli <= WHOLE:
        raise RecordError("milli must be 1..1000")
    mig_raw = d.get("mig", [])
    if not isinstance(mig_raw, list):
        raise RecordError("mig must be a list of [gpu, slot] pairs")
    mig = tuple(tuple(_ints(x, "mig entry")) for x in mig_raw)
    if any(len(x) != 2 for x in mig):
        raise RecordError("mig must be a list of [gpu, slot] pairs")
    uuids = d.get("uuids", [])
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        raise RecordError("uuids must be a list of strings")
    return Record(node, gpus, milli, tuple((a, b) for a, b in mig), tuple(uuids))


@dataclass(frozen=True, slots=True)
class Intent:
    """A `gpuplace.io/binding` value: a Binding with `record` may have been sent, with that deadline."""

    record: Record
    timeout_seconds: float | None
    holder: str
    sent: str


def encode_intent(record: str, *, timeout_seconds: float, holder: str, sent: str) -> str:
    """The `gpuplace.io/binding` value for a Binding about to carry the `gpuplace.io/gpus` value `record`."""
    body = {
        "v": 1,
        "record": orjson.loads(record),
        "timeout_seconds": timeout_seconds,
        "holder": holder,
        "sent": sent,
    }
    return orjson.dumps(body).decode()


def decode_intent(value: str) -> Intent:
    """Parse a `gpuplace.io/binding` value; RecordError says what is wrong. A missing or unreadable
    `timeout_seconds` is None (the caller then assumes the API server's longest deadline)."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise RecordError(f"not JSON: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("record"), dict):
        raise RecordError("not a JSON object with a record")
    if d.get("v", 1) != 1:
        raise RecordError(f"unsupported version {d.get('v')!r}")
    timeout = d.get("timeout_seconds")
    if not (isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0):
        timeout = None
    return Intent(
        decode_record(orjson.dumps(d["record"]).decode()),
        None if timeout is None else float(timeout),
        str(d.get("holder") or ""),
        str(d.get("sent") or ""),
    )
