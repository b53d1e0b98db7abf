"""The chart's alerts and dashboard: promtool checks the rules and runs their unit tests (every alert
fires on its condition and stays quiet on healthy series: files/alerts-test.yaml), and every dashboard
expression is one of the queries the real-Prometheus e2e test evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy import chart

FILES = chart.CHART / "files"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return chart.tool("promtool")


def test_promtool_check_rules(promtool: Path) -> None:
    result = chart.run([promtool, "check", "rules", FILES / "alerts.yaml"])
    assert result.returncode == 0 and "SUCCESS: 11 rules found" in result.stdout, (
        result.stdout + result.stderr
    )


def test_promtool_test_rules_every_alert_fires_and_stays_quiet(promtool: Path) -> None:
    result = chart.run([promtool, "test", "rules", "alerts-test.yaml"], cwd=FILES)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    tested = (FILES / "alerts-test.yaml").read_text()
    alerts = (FILES / "alerts.yaml").read_text()
    for name in [
        line.split(":", 1)[1].strip() for line in alerts.splitlines() if line.strip().startswith("- alert:")
    ]:
        assert tested.count(f"alertname: {name}") >= 2, f"{name}: needs a firing and a quiet case"


def test_dashboard_is_valid_json_with_an_expression_per_panel() -> None:
    board = json.loads((FILES / "dashboard.json").read_text())
    assert board["uid"] == "gpuplace" and board["panels"]
    assert all(p["targets"][0]["expr"] for p in board["panels"])
