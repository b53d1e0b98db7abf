"""The deploy tests' tools — helm, prometheus, promtool — built by ``deploy/local/build-tools.sh``.

Separate from :mod:`gpuplace.localcluster.binaries` (the control plane's four binaries) because they
come from other wrapper modules (helm, prometheus and promtool from one, compiled together) and a change
to one must not rebuild the other. They are always built into this checkout's ``deploy/local/bin`` (``GPUPLACE_TOOLS_BIN`` points elsewhere); build-tools.sh is
stamped per tool, so asking for a tool that is up to date costs milliseconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gpuplace.localcluster.binaries import repo_root

ENV_TOOLS_DIR = "GPUPLACE_TOOLS_BIN"
TOOLS = ("helm", "promtool", "prometheus", "kindconfig")


def tools_dir() -> Path:
    override = os.environ.get(ENV_TOOLS_DIR)
    return Path(override) if override else repo_root() / "deploy" / "local" / "bin"


def build(*names: str, timeout: float = 3600.0) -> subprocess.CompletedProcess[str]:
    """Run build-tools.sh for `names` (seconds when up to date). Output is captured, not raised."""
    script = repo_root() / "deploy" / "local" / "build-tools.sh"
    return subprocess.run(
        ["bash", str(script), *names], capture_output=True, text=True, timeout=timeout, check=False
    )


def path(name: str) -> Path:
    return tools_dir() / name


def present(name: str) -> bool:
    return os.access(path(name), os.X_OK)
