"""The simulator's warm-up (gpuplace.simulate.warmup, run by `make warm`) reaches every kernel a replay
can: after it, replays of every policy, with and without departures, topology-aware or not, quantized
or not, and bench/upper_bound's clairvoyant packing compile (or load) nothing.

Why it matters: `_replay` compiled inside the first case of test_upper_bound.py took 594 s on a loaded
2-core machine, close to the per-test timeout. As tests/scheduler/test_warmup.py does, the check runs in
a fresh interpreter and counts each Numba dispatcher's signatures, which grow whether a kernel is
compiled or loaded from the cache, so it holds with a warm cache and a cold one alike.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from gpuplace.localcluster import binaries

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil
    import numpy as np
    import gpuplace.simulate, placement_core
    from numba.core.registry import CPUDispatcher

    def dispatchers():
        out = {}
        for pkg in (placement_core, gpuplace.simulate):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                for v in vars(importlib.import_module(m.name)).values():
                    if isinstance(v, CPUDispatcher):
                        out[f"{v.py_func.__module__}.{v.py_func.__name__}"] = v
        return out

    from gpuplace.simulate import warmup
    from placement_core import placer
    placer.warmup()
    warmup.warmup()
    before = {k: len(v.signatures) for k, v in dispatchers().items()}

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

    grew = {k: [str(sig) for sig in v.signatures[before.get(k, 0):]]
            for k, v in dispatchers().items() if len(v.signatures) > before.get(k, 0)}
    print(json.dumps(grew))
    """
)


def test_no_simulator_kernel_is_compiled_or_loaded_after_warmup() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=binaries.repo_root(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    grew = out.stdout.strip().splitlines()[-1]
    assert grew == "{}", f"simulator kernels first reached after warm-up (they compile in a test): {grew}"
