"""`gpuplace demo --once` (what `make demo` runs) works end to end and shows what the README promises:
pods Running, a Deployment's replicas, a Job run to completion, the pending pods' reasons."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gpuplace.localcluster import binaries

pytestmark = pytest.mark.e2e


def test_live_demo_once(local_binaries: binaries.Binaries) -> None:
    env = {**os.environ, binaries.ENV_BIN_DIR: str(local_binaries.kubectl.parent), "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "gpuplace.cli", "demo", "--once"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    rows = {cells[0]: cells for line in out.splitlines() if line.count("│") > 6
            for cells in [[c.strip() for c in line.split("│")[1:-1]]]}  # fmt: skip
    # pod | asks for | phase | node | GPUs chosen (gpuplace's record) | NVLink island | pending reason / note
    _, _, phase, node, gpus, island, _ = rows["train-llm-a"]
    assert phase == "Running" and node.startswith("h100-") and gpus == "0,1,2,3,4,5,6,7" and island == "yes"
    _, _, phase, node, gpus, island, _ = rows["train-v100-a"]
    assert phase == "Running" and node.startswith("v100-") and len(gpus.split(",")) == 4 and island == "yes"
    # The Deployment's ReplicaSet made the 3 replicas (kwok runs them); the model annotation is gpuplace's:
    # kube-scheduler alone could pick any GPU node.
    replicas = [cells for name, cells in rows.items() if name.startswith("infer-l4-")]
    assert len(replicas) == 3
    for _, _, phase, node, gpus, _, _ in replicas:
        assert phase == "Running" and node.startswith("l4-") and gpus == "0"
    # The Job's 4 pods all ran to completion (two waves on the GPUs gpuplace gave back).
    job_pods = [cells for name, cells in rows.items() if name.startswith("train-job-")]
    assert len(job_pods) == 4 and all(cells[2] == "Succeeded" and cells[4] for cells in job_pods)
    _, _, _, node, gpus, _, _ = rows["mig-3g-a"]
    assert node.startswith("a100mig-") and re.fullmatch(r"GPU\d+/slot\d+ 3g\.40gb", gpus), gpus
    assert rows["web-frontend"][3].startswith("cpu-") and rows["web-frontend"][4] == ""  # the GPU taint's work
    # Pending with gpuplace's reasons, on nodes that passed kube-scheduler's own filters (it alone would bind both).
    assert rows["embed-100gb"][2] == "Pending" and "needs GPUs with ≥ 100000 MiB" in rows["embed-100gb"][6]
    assert rows["train-a100-8"][2] == "Pending" and "GPU model is not one of A100-80GB" in rows["train-a100-8"][6]
    assert "created 16 fake nodes" in out
