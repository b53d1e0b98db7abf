"""The default policy packs whole-GPU pods: the e2e packing sequence (tests/e2e/test_packing.py) through the
extender's own scoring path — policy → prioritize's 0..10 → kube-scheduler's weight 5 — plus the in-tree
scores that spread (NodeResourcesFit LeastAllocated and BalancedAllocation over CPU and memory), each pod
on the best total, ties to the first node, its GPUs from the bind chooser."""

from __future__ import annotations

import numpy as np
import pytest

from placement_core import MODELS, ClusterState, GpuRequest, NodeSpec, NvlinkNeed, placer
from scheduler.policy import DEFAULT_POLICY, scoring_function
from scheduler.verbs.prioritize import normalise
from tests.e2e.test_packing import PACKING_NODES, SEQUENCE

EXTENDER_WEIGHT = 5  # gpuplace_proc.scheduler_config, deploy/scheduler/kube-scheduler-config.yaml


def in_tree(state: ClusterState, req: GpuRequest) -> np.ndarray:
    """LeastAllocated + BalancedAllocation (pkg/scheduler/framework/plugins/noderesources, least_allocated.go
    and balanced_allocation.go) over CPU and memory, weight 1 each, 0..100."""
    n = state.n_rows
    cpu = (state.node_cpu_total[:n] - state.node_cpu_free[:n] + req.cpu_milli) / state.node_cpu_total[:n]
    mem = (state.node_mem_total[:n] - state.node_mem_free[:n] + req.memory_mib) / state.node_mem_total[:n]
    least = np.floor(((1 - cpu) + (1 - mem)) / 2 * 100)
    balanced = np.floor((1 - np.abs(cpu - mem) / 2) * 100)
    return least + balanced


def partly_used_after_sequence(policy: str) -> int:
    state = ClusterState(max_gpus=8, capacity=PACKING_NODES)
    for i in range(PACKING_NODES):
        state.upsert_node(
            NodeSpec.uniform(f"n{i}", MODELS["H100-80GB"], 8, cpu_milli=224_000, memory_mib=2_048_000)
        )
    score = scoring_function(policy, 0.5)
    for k, (gpus, cpu) in enumerate(SEQUENCE):
        req = GpuRequest(
            count=gpus, cpu_milli=int(cpu) * 1000, memory_mib=64 * 1024, nvlink=NvlinkNeed.PREFERRED
        )
        reason, _ = placer.evaluate(state, req)
        total = normalise(score(state, req, reason)) * EXTENDER_WEIGHT * 10 + in_tree(state, req)
        total = np.where(reason[: state.n_rows] == 0, total, -np.inf)
        placement = placer.choose(state, state.names[int(np.argmax(total))], req)
        assert placement is not None
        state.allocate(f"pod-{k}", placement)
        assert not state.check_invariants()
    used = [int((~(state.gpu_free_milli[i] >= 1000)).sum()) for i in range(state.n_rows)]
    return sum(1 for u in used if 0 < u < 8)


@pytest.mark.parametrize("policy", sorted({DEFAULT_POLICY, "gpuplace"}))
def test_default_policy_leaves_at_most_one_node_partly_used(policy: str) -> None:
    assert partly_used_after_sequence(policy) <= 1
