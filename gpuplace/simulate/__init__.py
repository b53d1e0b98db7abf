"""Trace replay for placement policies (`gpuplace simulate`).

traces (openb CSV readers) → engine (cluster arrays, FGD's workload method, the Numba replay loop) →
metrics (FGD's measures, mean ± std over seeds) → report (tables, plot); runner ties them together and
cli exposes `main(argv) -> int`. The policies themselves live in placement_core.policies.
"""
