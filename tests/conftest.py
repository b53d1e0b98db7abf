"""Session-wide: name every Numba kernel this pytest process compiled instead of loading it.

`make test` compiles the kernels the suite reaches before pytest starts (`make warm`:
placement_core.placer.warmup and gpuplace.simulate.warmup). A kernel compiled inside a test costs
that test its compile time, minutes on a loaded 2-core machine (the simulator's replay loop: 594 s,
close to the per-test timeout). The end-of-run summary lists each one (a Numba cache miss in this
process) so it can be added to a warm-up; with a warm cache the list is empty.
"""

from __future__ import annotations

import sys
from typing import Any


def compiled_here() -> dict[str, list[str]]:
    """Kernel → the signatures this process compiled (cache misses), for every loaded Numba kernel."""
    if "numba" not in sys.modules:
        return {}
    from numba.core.registry import CPUDispatcher

    out: dict[str, list[str]] = {}
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, CPUDispatcher) and value._cache_misses:
                name = f"{value.py_func.__module__}.{value.py_func.__qualname__}"
                out[name] = sorted(str(sig) for sig in value._cache_misses)
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    compiled = compiled_here()
    if not compiled:
        return
    terminalreporter.section("Numba kernels compiled during the tests (not warmed up)")
    for name, sigs in sorted(compiled.items()):
        terminalreporter.write_line(f"{name}: {', '.join(sigs)}")
