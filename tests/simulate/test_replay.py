"""End-to-end replays: a tiny hand-checked trace, FGD's workload method, departures, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpuplace.simulate.cli import main
from gpuplace.simulate.engine import Cluster, PodArrays, arrivals, policy_context, run_seed, timeline
from gpuplace.simulate.runner import Scenario, parse_seeds, run_policy
from gpuplace.simulate.traces import read_nodes, read_pods
from placement_core.policies import Policy
from tests.simulate.conftest import write

NODES = """
sn,cpu_milli,memory_mib,gpu,model
a,32000,131072,2,T4
b,96000,393216,8,G2
"""
PODS = """
name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
p0,8000,16384,8,1000,,LS,Running,0,50,0
p1,4000,8192,1,500,,LS,Running,1,60,1
p2,4000,8192,1,500,T4,LS,Running,2,70,2
p3,2000,4096,1,1000,,LS,Running,3,80,3
p4,90000,4096,0,0,,BE,Running,4,90,4
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Scenario:
    return Scenario(read_nodes(write(tmp_path / "n.csv", NODES)), read_pods(write(tmp_path / "p.csv", PODS)))


def test_arrivals_follow_fgds_method(tiny: Scenario) -> None:
    cap = Cluster.from_table(tiny.nodes).capacity_milli  # 10 GPUs
    req = tiny.pods.gpu_milli_total
    ev = arrivals(tiny.pods, cap, 1.3, np.random.default_rng(1))
    total = int(req[ev.pod].sum())
    assert sorted(ev.pod[:5].tolist()) == [0, 1, 2, 3, 4]  # every pod once, shuffled, then resampled ones
    assert total <= 1.3 * cap
    down = arrivals(tiny.pods, cap, 0.5, np.random.default_rng(1))  # 11 GPUs requested > 5: drop random pods
    assert int(req[down.pod].sum()) <= 0.5 * cap and len(set(down.pod.tolist())) == len(down.pod)


def test_tiny_replay_with_best_fit(tiny: Scenario) -> None:
    s = run_policy(Policy.BEST_FIT, Scenario(tiny.nodes, tiny.pods, arrival=1.0), [3])
    # Requests (11 GPUs) exceed the 10 GPUs, so arrival 1.0 drops pods until ≤ 10 are requested; the 8-GPU pod
    # and the 90-core CPU pod cannot both land on b, so whichever comes second fails.
    assert s.alloc[100].mean <= 100.0
    assert sum(s.failed.values()) + sum(s.placed.values()) >= 4


def test_gpu_spec_cpu_and_memory_are_honoured(tiny: Scenario) -> None:
    cluster = Cluster.from_table(tiny.nodes)
    pods = PodArrays.build(tiny.pods, cluster.model_names)
    metric = policy_context(Policy.FGD, cluster, tiny.pods)
    for policy in Policy:
        ev = timeline(tiny.pods)
        run = run_seed(policy, cluster, pods, policy_context(policy, cluster, tiny.pods), metric, ev,
                       rng=np.random.default_rng(0))
        assert run.node[2] == 0, policy  # p2 asks for a T4: only node a has them
        assert run.node[0] == 1, policy  # the 8-GPU pod fits only on b
        assert run.node[4] == -1, policy  # 90 cores while p0 holds 8 of b's 96 (a has 32): nowhere


def test_departures_free_everything(tiny: Scenario) -> None:
    ev = timeline(tiny.pods)
    assert len(ev.pod) == 10 and not ev.delete[0] and ev.delete[-1]
    s = run_policy(Policy.FGD, Scenario(tiny.nodes, tiny.pods, departures=True), [0])
    assert s.failed.get("cpu", 0) == 1  # p4 (90 cores) arrives while p0 holds 8 of b's 96 cores
    assert s.mean_alloc.mean > 0


def test_same_seed_same_result(tiny: Scenario) -> None:
    a = run_policy(Policy.RANDOM, tiny, [5, 6])
    b = run_policy(Policy.RANDOM, tiny, [5, 6])
    assert a.per_seed_alloc == b.per_seed_alloc


def test_parse_seeds() -> None:
    assert parse_seeds("42..45") == [42, 43, 44, 45]
    assert parse_seeds("1,3,7") == [1, 3, 7]
    with pytest.raises(ValueError):
        parse_seeds("5..1")


def test_cli_writes_table_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes, pods = write(tmp_path / "n.csv", NODES), write(tmp_path / "p.csv", PODS)
    out = tmp_path / "out"
    code = main(["--nodes", str(nodes), "--pods", str(pods), "--policy", "FGD,gpuplace", "--seeds", "1..2",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    assert "gpuplace" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"results.md", "results.json", "allocation.png"}


def test_cli_errors_are_single_plain_lines_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """People grep logs: an error is one unwrapped, uncoloured line on stderr, however long the path is."""
    deep = tmp_path / ("a-directory-name-long-enough-to-pass-any-console-width-" * 3)
    deep.mkdir()
    nodes = write(deep / "n.csv", NODES)
    pods = write(deep / "p.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nq,1000,10,2,500\n")
    assert main(["--nodes", str(nodes), "--pods", str(pods), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"gpuplace simulate: error: {pods}:2: pod q: a fractional share (gpu_milli=500) needs num_gpu=1, got 2"]
    assert main(["--nodes", str(nodes), "--pods", str(pods), "--policy", "tetris"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("gpuplace simulate: error: ") and "tetris" in line and "\x1b" not in line
