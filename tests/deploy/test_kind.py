"""deploy/kind: the cluster config loads with kind's own config API (kind v0.33.0, strict: unknown
fields are errors) and describes what kind-up.sh expects. kind itself cannot run here; this is all of
the kind path that is tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy import chart

KIND = chart.ROOT / "deploy" / "kind"


@pytest.fixture(scope="module")
def kindconfig() -> Path:
    return chart.tool("kindconfig")


def test_cluster_config_loads_with_kinds_config_api(kindconfig: Path) -> None:
    result = chart.run([kindconfig, KIND / "cluster.yaml"])
    assert result.returncode == 0, result.stderr
    (cluster,) = json.loads(result.stdout).values()
    roles = [n["role"] for n in cluster["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") == 3
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    assert all(int(n["labels"]["nvidia.com/gpu.count"]) > 0 for n in workers)  # kind-up.sh reads it
    assert {n["image"] for n in cluster["nodes"]} == {"kindest/node:v1.36.3"}


def test_the_loader_rejects_what_kind_would(kindconfig: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((KIND / "cluster.yaml").read_text().replace("role: worker", "role: wrker\n    gpus: 8", 1))
    result = chart.run([kindconfig, bad])
    assert result.returncode != 0 and "gpus" in result.stderr
