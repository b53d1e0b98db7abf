"""`gpuplace demo --once` (what `make demo` runs) works end to end and shows what the README promises."""

from __future__ import annotations

import os
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
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 6}
    assert "h100-" in rows["train-llm-a"] and "0,1,2,3,4,5,6,7" in rows["train-llm-a"]
    assert "v100-" in rows["train-v100-a"] and " yes " in rows["train-v100-a"]
    assert all("l4-" in rows[f"infer-l4-{i}"] for i in range(3))
    assert "a100mig-" in rows["mig-3g-a"] and "3g.40gb" in rows["mig-3g-a"]
    assert "cpu-" in rows["web-frontend"]
    assert "Pending" in rows["embed-100gb"] and "needs GPUs with ≥ 100000 MiB" in rows["embed-100gb"]
    assert "Pending" in rows["train-a100-8"]
    assert "created 16 fake nodes" in out
