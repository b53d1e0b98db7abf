"""The check behind tests/scheduler/test_warmup.py and tests/simulate/test_warmup.py: which Numba kernels
a fresh interpreter first reaches after a warm-up.

It runs in a fresh interpreter (the test process has compiled kernels for other tests already) and
counts each Numba dispatcher's signatures, which grow whether a kernel is compiled or loaded from the
cache, so it holds with a warm cache and a cold one alike.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from gpuplace.localcluster import binaries

_COUNT = """
import importlib, json, pkgutil
from numba.core.registry import CPUDispatcher

def dispatchers():
    out = {}
    for pkg in [importlib.import_module(p) for p in PACKAGES]:
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            for v in vars(importlib.import_module(m.name)).values():
                if isinstance(v, CPUDispatcher):
                    out[f"{v.py_func.__module__}.{v.py_func.__name__}"] = v
    return out
"""


def first_reached_after(warmup: str, calls: str, packages: tuple[str, ...]) -> str:
    """Run `warmup`, then `calls` (Python source) in a fresh interpreter; the kernels of `packages` whose
    signatures grew during `calls`, as JSON (kernel → new signatures; "{}" when none)."""
    script = "\n".join(
        [
            f"PACKAGES = {packages!r}",
            _COUNT,
            textwrap.dedent(warmup),
            "before = {k: len(v.signatures) for k, v in dispatchers().items()}",
            textwrap.dedent(calls),
            "grew = {k: [str(sig) for sig in v.signatures[before.get(k, 0):]]",
            "        for k, v in dispatchers().items() if len(v.signatures) > before.get(k, 0)}",
            "print(json.dumps(grew))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=binaries.repo_root(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout.strip().splitlines()[-1]
