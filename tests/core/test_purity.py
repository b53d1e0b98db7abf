"""placement_core may import only the standard library, numpy and numba (import-linter checks the
known offenders; this allowlist check catches any other third-party import)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {"numpy", "numba", "placement_core"}


def test_placement_core_imports_only_stdlib_numpy_numba() -> None:
    root = Path(__file__).resolve().parents[2] / "placement_core"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
