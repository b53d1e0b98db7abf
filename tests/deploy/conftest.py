"""Fixtures for the chart tests: helm (deploy/local/build-tools.sh) and kubectl (deploy/local/build.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import chart


@pytest.fixture(scope="session")
def helm() -> Path:
    return chart.tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return chart.kubectl()
