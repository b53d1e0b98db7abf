"""Compile (or load from the Numba cache) the simulator's kernels once, before anything runs a replay.

The replay loop (`engine._replay`, every policy's scoring inlined into it) is the largest kernel in the
repository: compiling it inside the first case of tests/simulate/test_upper_bound.py took 594 s on a
loaded 2-core machine, near pytest's per-test timeout. `make warm` runs `warmup()` after
`placement_core.placer.warmup()`, so tests, benches and `gpuplace simulate` load it from NUMBA_CACHE_DIR.

The policy is a runtime argument of `_replay` and every array keeps the dtype the trace readers give it
(gpuplace.simulate.traces), so one tiny replay per event shape (arrivals; creation and deletion times)
reaches each kernel with the one signature every caller uses. tests/simulate/test_warmup.py holds it so.
"""

from __future__ import annotations

import numpy as np

from gpuplace.simulate.runner import Scenario, run_policy
from gpuplace.simulate.traces import NodeTable, PodTable
from placement_core.policies import Policy
from placement_core.request import WHOLE


def tiny_trace() -> tuple[NodeTable, PodTable]:
    """Two GPU nodes of two models and a CPU-only node; a whole-GPU, a multi-GPU, a shared-GPU, a
    model-constrained and a CPU-only pod, with creation and deletion times."""
    nodes = NodeTable(
        names=("n0", "n1", "n2"),
        cpu_milli=np.array([96000, 64000, 32000], np.int64),
        memory_mib=np.array([786432, 262144, 131072], np.int64),
        gpus=np.array([8, 2, 0], np.int32),
        models=("A100-SXM4-80GB", "T4", ""),
    )
    pods = PodTable(
        names=("p0", "p1", "p2", "p3", "p4"),
        cpu_milli=np.array([8000, 16000, 2000, 4000, 1000], np.int64),
        memory_mib=np.array([32768, 65536, 8192, 16384, 4096], np.int64),
        gpu_count=np.array([1, 4, 1, 1, 0], np.int32),
        gpu_milli=np.array([WHOLE, WHOLE, 500, WHOLE, 0], np.int32),
        models=(None, None, None, frozenset({"T4"}), None),
        creation=np.array([0, 1, 2, 3, 4], np.int64),
        deletion=np.array([5, -1, 6, -1, 7], np.int64),
    )
    return nodes, pods


def warmup() -> None:
    nodes, pods = tiny_trace()
    for departures in (False, True):
        run_policy(Policy.GPUPLACE, Scenario(nodes, pods, departures=departures), [0])
