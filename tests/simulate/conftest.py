"""Shared fixtures: the openb trace (../shared/data beside the checkout) and small CSV builders.

GPUPLACE_DATA overrides the data directory (a git worktree elsewhere). On a developer machine without the
data the replay tests skip; in CI (CI=true) a missing data set is a failure, never a green skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("GPUPLACE_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
OPENB = DATA / "openb"


def require_openb(path: Path = OPENB) -> Path:
    if (path / "openb_node_list_gpu_node.csv").exists():
        return path
    message = f"the openb trace ({path}) is not available; set GPUPLACE_DATA to the directory holding openb/"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def openb() -> Path:
    return require_openb()


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"))
    return path
