"""The openb CSV readers: both pod formats, and a clear error naming the line for every malformed row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpuplace.simulate.traces import TraceError, read_nodes, read_pods
from tests.simulate.conftest import write

NODES = """
sn,cpu_milli,memory_mib,gpu,model
n0,64000,262144,2,P100
n1,96000,393216,8,G2
c0,32000,262144,0,
"""
PODS11 = """
name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
p0,12000,16384,1,1000,,LS,Running,0,100,0
p1,6000,12288,1,460,V100M16|V100M32,LS,Running,5,,5
p2,4000,8192,0,0,,BE,Running,7,9,7
"""
PODS5 = """
name,cpu_milli,memory_mib,num_gpu,gpu_milli
p0,88000,327680,8,1000
p1,3152,5600,1,810
"""


def test_nodes(tmp_path: Path) -> None:
    t = read_nodes(write(tmp_path / "n.csv", NODES))
    assert t.names == ("n0", "n1", "c0")
    assert t.gpus.tolist() == [2, 8, 0]
    assert t.models == ("P100", "G2", "")
    assert t.total_gpus == 10
    assert t.model_names() == ["P100", "G2"]


def test_pods_11_columns(tmp_path: Path) -> None:
    t = read_pods(write(tmp_path / "p.csv", PODS11))
    assert t.gpu_count.tolist() == [1, 1, 0]
    assert t.gpu_milli.tolist() == [1000, 460, 0]
    assert t.models == (None, frozenset({"V100M16", "V100M32"}), None)
    assert t.creation is not None and t.deletion is not None
    assert t.deletion.tolist() == [100, -1, 9]
    assert t.gpu_milli_total.tolist() == [1000, 460, 0]


def test_pods_5_columns(tmp_path: Path) -> None:
    t = read_pods(write(tmp_path / "p.csv", PODS5))
    assert t.gpu_count.tolist() == [8, 1]
    assert t.creation is None and t.deletion is None
    assert t.gpu_milli_total.tolist() == [8000, 810]


def test_real_files(openb: Path) -> None:
    nodes = read_nodes(openb / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213 and nodes.total_gpus == 6212
    assert len(read_nodes(openb / "openb_node_list_all_node.csv")) == 1523
    assert len(read_pods(openb / "openb_pod_list_default.csv")) == 8152
    multi = read_pods(openb / "openb_pod_list_multigpu20.csv")
    assert multi.creation is None and int(np.sum(multi.gpu_count == 8)) == 141
    spec = read_pods(openb / "openb_pod_list_gpuspec10.csv")
    assert sum(m is not None for m in spec.models) > 0


HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p,1000,10,1", "expected 5 fields, got 4"),
        ("p,abc,10,1,1000", "cpu_milli must be an integer, got 'abc'"),
        ("p,1000,-5,1,1000", "memory_mib must be ≥ 0, got -5"),
        ("p,1000,10,1,1500", "gpu_milli must be 0..1000, got 1500"),
        ("p,1000,10,0,500", "has gpu_milli=500 but num_gpu=0"),
        ("p,1000,10,2,0", "asks for 2 GPU(s) with gpu_milli=0"),
        ("p,1000,10,2,500", "a fractional share (gpu_milli=500) needs num_gpu=1, got 2"),
        (",1000,10,1,1000", "empty pod name"),
        ("p,1.5,10,1,1000", "cpu_milli must be an integer, got '1.5'"),
    ],
)
def test_malformed_pod_row_names_the_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "p.csv", HEADER + "ok,1000,10,1,1000\n" + row + "\n")
    with pytest.raises(TraceError) as e:
        read_pods(path)
    assert f"{path}:3:" in str(e.value)
    assert message in str(e.value)


def test_malformed_times_name_the_line(tmp_path: Path) -> None:
    text = PODS11.replace("p2,4000,8192,0,0,,BE,Running,7,9,7", "p2,4000,8192,0,0,,BE,Running,7,3,7")
    path = write(tmp_path / "p.csv", text)
    with pytest.raises(TraceError, match=r":4: pod p2 is deleted \(3\) before it is created \(7\)"):
        read_pods(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("n2,1000,10,4,", "node n2 has 4 GPUs but no model"),
        ("n0,1000,10,1,T4", "duplicate node name 'n0'"),
        ("n2,1000,10,99,T4", "gpu must be 0..16, got 99"),
        ("n2,1000,10,x,T4", "gpu must be an integer, got 'x'"),
    ],
)
def test_malformed_node_row_names_the_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "n.csv", NODES + row + "\n")
    with pytest.raises(TraceError) as e:
        read_nodes(path)
    assert f"{path}:5:" in str(e.value)
    assert message in str(e.value)


def test_bad_header_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r":1: header lacks column\(s\) gpu_milli"):
        read_pods(write(tmp_path / "a.csv", "name,cpu_milli,memory_mib,num_gpu\np,1,1,0\n"))
    with pytest.raises(TraceError, match=r":1: empty file"):
        read_pods(write(tmp_path / "b.csv", ""))
    with pytest.raises(TraceError, match="no pods"):
        read_pods(write(tmp_path / "c.csv", HEADER))
    with pytest.raises(TraceError, match="cannot open"):
        read_nodes(tmp_path / "missing.csv")
