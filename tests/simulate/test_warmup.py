"""The simulator's warm-up (gpuplace.simulate.warmup, run by `make warm`) reaches every kernel a replay
can: after it, replays of every policy, with and without departures, topology-aware or not, quantized
or not, and bench/upper_bound's clairvoyant packing compile (or load) nothing.

Why it matters: `_replay` compiled inside the first case of test_upper_bound.py took 594 s on a loaded
2-core machine, close to the per-test timeout. The check is tests/warm_kernels.py's, as for the extender's warm-up (tests/scheduler/test_warmup.py).
"""

from __future__ import annotations

from tests.warm_kernels import first_reached_after

WARMUP = """
from gpuplace.simulate import warmup
from placement_core import placer
placer.warmup()
warmup.warmup()
"""

CALLS = """
    import numpy as np
    from bench.upper_bound import offline_packing, prefix
    from gpuplace.simulate.engine import Cluster, PodArrays, arrivals, policy_context, run_seed, timeline
    from gpuplace.simulate.runner import Scenario, run_policy
    from placement_core.policies import Policy

    nodes, pods = warmup.tiny_trace()
    cluster = Cluster.from_table(nodes)
    arrays = PodArrays.build(pods, cluster.model_names)
    metric = policy_context(Policy.FGD, cluster, pods)
    for policy in Policy:
        run_policy(policy, Scenario(nodes, pods), [1, 2])
        run_policy(policy, Scenario(nodes, pods, departures=True), [0], quantize=True)
        for topo in (False, True):
            for events in (timeline(pods), arrivals(pods, cluster.capacity_milli, 1.3, np.random.default_rng(3))):
                ctx = policy_context(policy, cluster, pods, quantize=topo)
                run_seed(policy, cluster, arrays, ctx, metric, events, rng=np.random.default_rng(0),
                         topology_aware=topo)
    offline_packing(nodes, pods, prefix(pods, nodes.total_gpus * 1000, 7, 130), 7)

"""


def test_no_simulator_kernel_is_compiled_or_loaded_after_warmup() -> None:
    grew = first_reached_after(WARMUP, CALLS, ("placement_core", "gpuplace.simulate"))
    assert grew == "{}", f"simulator kernels first reached after warm-up (they compile in a test): {grew}"
