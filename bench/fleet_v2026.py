"""A whole-GPU fleet: the Alibaba 2026 node list with a generated training/inference mix.

    .venv/bin/python bench/fleet_v2026.py --out DIR     # writes DIR/nodes.csv and DIR/pods.csv (openb format)

Nodes: every GPU node of ../shared/data/alibaba-v2026/node_info_df.csv (4,278 nodes: A10 x1, A100-SXM4-80GB
x8, A800-SXM4-80GB x8, H800 x8, undisclosed GPU-series-1 x1/x4/x8 and GPU-series-2 x8). The list has no
memory column: each node gets 8 GiB per core (1 TiB for 128 cores). The multi-GPU models are taken as
NVSwitch boards (gpuplace/simulate/gpuset.py).

Pods (seeded, `POD_COUNT` of them; the replay then resamples to 130 % of the GPUs as FGD's method does) —
whole GPUs only, no shares:
- inference, 60 % of pods: 1 GPU, 4/8/16/32 cores, 16/32/64/128/256 GiB (LLM serving holds its weights in
  host memory too), any model;
- training, 40 % of pods: 2, 4 or 8 GPUs (35/30/35 %), 8/12/16 cores and 64/96/128 GiB per GPU, on the
  8-GPU data-centre models (A100, A800, H800, GPU-series-2), or any model with 8 GPUs for a third of them.
Training carries about three quarters of the GPU demand; 8-GPU jobs need a whole empty node.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpuplace.simulate.traces import NodeTable, PodTable  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alibaba-v2026" / "node_info_df.csv"  # --data overrides
MIB_PER_CORE = 8 * 1024
POD_COUNT = 12_000
SEED = 2026
DATACENTRE = frozenset({"A100-SXM4-80GB", "A800-SXM4-80GB", "H800", "GPU-series-2"})


def nodes(path: Path = DATA) -> NodeTable:
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["gpu_capacity_num"]) > 0]
    cpu = np.array([int(r["cpu_num"]) * 1000 for r in rows], np.int64)
    return NodeTable(
        names=tuple(f"v2026-{r['node_name']}" for r in rows),
        cpu_milli=cpu,
        memory_mib=np.array([int(r["cpu_num"]) * MIB_PER_CORE for r in rows], np.int64),
        gpus=np.array([int(r["gpu_capacity_num"]) for r in rows], np.int32),
        models=tuple(r["gpu_model"] for r in rows),
    )


def pods(seed: int = SEED, count: int = POD_COUNT) -> PodTable:
    rng = np.random.default_rng(seed)
    names, cpu, mem, gpus, models = [], [], [], [], []
    for i in range(count):
        if rng.random() < 0.6:
            g, c, m, allowed = 1, int(rng.choice([4, 8, 16, 32])), int(rng.choice([16, 32, 64, 128, 256])), None
        else:
            g = int(rng.choice([2, 4, 8], p=[0.35, 0.30, 0.35]))
            c = g * int(rng.choice([8, 12, 16]))
            m = g * int(rng.choice([64, 96, 128]))
            allowed = DATACENTRE if rng.random() < 2 / 3 else None
        names.append(f"{'infer' if g == 1 else 'train'}-{i:05d}")
        cpu.append(c * 1000)
        mem.append(m * 1024)
        gpus.append(g)
        models.append(allowed)
    return PodTable(
        names=tuple(names),
        cpu_milli=np.array(cpu, np.int64),
        memory_mib=np.array(mem, np.int64),
        gpu_count=np.array(gpus, np.int32),
        gpu_milli=np.where(np.array(gpus) > 0, 1000, 0).astype(np.int32),
        models=tuple(models),
        creation=None,
        deletion=None,
    )


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n = nodes()
    with (out / "nodes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sn", "cpu_milli", "memory_mib", "gpu", "model"])
        w.writerows(zip(n.names, n.cpu_milli, n.memory_mib, n.gpus, n.models, strict=True))
    p = pods()
    with (out / "pods.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"])
        for row in zip(p.names, p.cpu_milli, p.memory_mib, p.gpu_count, p.gpu_milli, p.models, strict=True):
            w.writerow([*row[:5], "|".join(sorted(row[5])) if row[5] else ""])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    write(ap.parse_args().out)
