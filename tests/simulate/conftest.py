"""Shared fixtures: the openb trace (../shared/data beside the checkout) and small CSV builders."""

from __future__ import annotations

from pathlib import Path

import pytest

OPENB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openb"


@pytest.fixture
def openb() -> Path:
    if not (OPENB / "openb_node_list_gpu_node.csv").exists():
        pytest.skip("the openb trace (../shared/data/openb) is not available")
    return OPENB


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"))
    return path
