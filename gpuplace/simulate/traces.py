"""Readers for the Alibaba openb trace CSVs (cluster-trace-gpu-v2023), strict and line-precise.

Node list: `sn,cpu_milli,memory_mib,gpu,model`. Pod lists come in two shapes:
11 columns `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time` and 5 columns `name,cpu_milli,memory_mib,num_gpu,gpu_milli` (multigpu
variants). Columns are found by header name, so extra or reordered columns are fine. Every malformed row
raises `TraceError` naming the file and line, because a silently skipped row changes every result.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from placement_core.request import WHOLE

MAX_GPUS_PER_NODE = 16
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_TIME_COLUMNS = ("creation_time", "deletion_time")


class TraceError(ValueError):
    """A trace file that cannot be read as documented; the message names file and line."""


@dataclass(frozen=True, slots=True)
class NodeTable:
    names: tuple[str, ...]
    cpu_milli: npt.NDArray[np.int64]
    memory_mib: npt.NDArray[np.int64]
    gpus: npt.NDArray[np.int32]
    models: tuple[str, ...]  # "" for CPU-only nodes

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total_gpus(self) -> int:
        return int(self.gpus.sum())

    def model_names(self) -> list[str]:
        """Distinct GPU models in first-seen order; a model's id is its position here."""
        return list(dict.fromkeys(m for m in self.models if m))


@dataclass(frozen=True, slots=True)
class PodTable:
    names: tuple[str, ...]
    cpu_milli: npt.NDArray[np.int64]
    memory_mib: npt.NDArray[np.int64]
    gpu_count: npt.NDArray[np.int32]
    gpu_milli: npt.NDArray[np.int32]  # per GPU; 0 for CPU-only pods
    models: tuple[frozenset[str] | None, ...]  # allowed GPU models (gpu_spec), None = any
    creation: npt.NDArray[np.int64] | None  # seconds; None when the file has no time columns
    deletion: npt.NDArray[np.int64] | None  # -1 = never deleted

    def __len__(self) -> int:
        return len(self.names)

    @property
    def gpu_milli_total(self) -> npt.NDArray[np.int64]:
        return self.gpu_count.astype(np.int64) * self.gpu_milli


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: cannot open: {e.strerror}") from e
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TraceError(f"{path}:1: empty file, expected a header {','.join(required)}") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(f"{path}:1: header lacks column(s) {', '.join(missing)}; got {','.join(header)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise TraceError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            yield line, dict(zip(header, (c.strip() for c in row), strict=True))


def _int(path: Path, line: int, row: dict[str, str], col: str, *, lo: int = 0, hi: int | None = None) -> int:
    raw = row[col]
    try:
        value = int(raw)
    except ValueError:
        try:
            as_float = float(raw)
        except ValueError:
            as_float = float("nan")
        if not as_float.is_integer():
            raise TraceError(f"{path}:{line}: {col} must be an integer, got {raw!r}") from None
        value = int(as_float)
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f"≥ {lo}"
        raise TraceError(f"{path}:{line}: {col} must be {bound}, got {value}")
    return value


def read_nodes(path: str | Path) -> NodeTable:
    """Read an openb node list. CPU-only nodes (gpu = 0, empty model) are allowed."""
    p = Path(path)
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    gpus: list[int] = []
    models: list[str] = []
    seen: set[str] = set()
    for line, row in _rows(p, NODE_COLUMNS):
        name = row["sn"]
        if not name:
            raise TraceError(f"{p}:{line}: empty node name (column sn)")
        if name in seen:
            raise TraceError(f"{p}:{line}: duplicate node name {name!r}")
        seen.add(name)
        n_gpu = _int(p, line, row, "gpu", hi=MAX_GPUS_PER_NODE)
        model = row["model"]
        if n_gpu > 0 and not model:
            raise TraceError(f"{p}:{line}: node {name} has {n_gpu} GPUs but no model")
        names.append(name)
        cpu.append(_int(p, line, row, "cpu_milli"))
        mem.append(_int(p, line, row, "memory_mib"))
        gpus.append(n_gpu)
        models.append(model if n_gpu > 0 else "")
    if not names:
        raise TraceError(f"{p}: no nodes")
    return NodeTable(tuple(names), np.array(cpu, np.int64), np.array(mem, np.int64),
                     np.array(gpus, np.int32), tuple(models))


def read_pods(path: str | Path) -> PodTable:
    """Read an openb pod list (11- or 5-column form)."""
    p = Path(path)
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    count: list[int] = []
    milli: list[int] = []
    models: list[frozenset[str] | None] = []
    created: list[int] = []
    deleted: list[int] = []
    has_times: bool | None = None
    for line, row in _rows(p, POD_COLUMNS):
        if has_times is None:
            has_times = all(c in row for c in POD_TIME_COLUMNS)
        name = row["name"]
        if not name:
            raise TraceError(f"{p}:{line}: empty pod name (column name)")
        n = _int(p, line, row, "num_gpu", hi=64)
        m = _int(p, line, row, "gpu_milli", hi=WHOLE)
        if n == 0 and m != 0:
            raise TraceError(f"{p}:{line}: pod {name} has gpu_milli={m} but num_gpu=0")
        if n > 0 and m == 0:
            raise TraceError(f"{p}:{line}: pod {name} asks for {n} GPU(s) with gpu_milli=0")
        if n > 1 and m < WHOLE:
            raise TraceError(f"{p}:{line}: pod {name}: a fractional share (gpu_milli={m}) needs num_gpu=1, "
                             f"got {n}")
        spec = frozenset(s.strip() for s in row.get("gpu_spec", "").split("|") if s.strip())
        names.append(name)
        cpu.append(_int(p, line, row, "cpu_milli"))
        mem.append(_int(p, line, row, "memory_mib"))
        count.append(n)
        milli.append(m if n > 0 else 0)
        models.append(spec if spec and n > 0 else None)
        if has_times:
            created.append(_int(p, line, row, "creation_time"))
            deleted.append(_int(p, line, row, "deletion_time") if row["deletion_time"] else -1)
            if deleted[-1] != -1 and deleted[-1] < created[-1]:
                raise TraceError(f"{p}:{line}: pod {name} is deleted ({deleted[-1]}) before it is created "
                                 f"({created[-1]})")
    if not names:
        raise TraceError(f"{p}: no pods")
    return PodTable(
        tuple(names), np.array(cpu, np.int64), np.array(mem, np.int64), np.array(count, np.int32),
        np.array(milli, np.int32), tuple(models),
        np.array(created, np.int64) if has_times else None,
        np.array(deleted, np.int64) if has_times else None,
    )
