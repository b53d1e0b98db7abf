"""Where the upstream binaries live and how to (re)build them.

``deploy/local/build.sh`` compiles kube-apiserver, kube-scheduler, kube-controller-manager, kubectl,
etcd and kwok from the Go module proxy into ``deploy/local/bin``. ``GPUPLACE_LOCAL_BIN`` points
somewhere else (for example at binaries a user already has); it must contain the same six names.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl", "kwok")
ENV_BIN_DIR = "GPUPLACE_LOCAL_BIN"


class BinariesMissingError(FileNotFoundError):
    pass


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def build_script() -> Path:
    return repo_root() / "deploy" / "local" / "build.sh"


def default_bin_dir() -> Path:
    override = os.environ.get(ENV_BIN_DIR)
    if override:
        return Path(override)
    return repo_root() / "deploy" / "local" / "bin"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path
    kwok: Path

    @classmethod
    def locate(cls, bin_dir: Path | None = None) -> Binaries:
        directory = bin_dir or default_bin_dir()
        missing = [name for name in REQUIRED if not os.access(directory / name, os.X_OK)]
        if missing:
            raise BinariesMissingError(
                f"missing {', '.join(missing)} in {directory}: run `bash deploy/local/build.sh` "
                f"(or set {ENV_BIN_DIR} to a folder that has them)"
            )
        return cls(
            etcd=directory / "etcd",
            kube_apiserver=directory / "kube-apiserver",
            kube_scheduler=directory / "kube-scheduler",
            kube_controller_manager=directory / "kube-controller-manager",
            kubectl=directory / "kubectl",
            kwok=directory / "kwok",
        )


def present(bin_dir: Path | None = None) -> bool:
    try:
        Binaries.locate(bin_dir)
    except BinariesMissingError:
        return False
    return True


def build(*, timeout: float = 3600.0) -> subprocess.CompletedProcess[str]:
    """Run build.sh (seconds when up to date, many minutes cold). Output is captured, not raised."""
    return subprocess.run(
        ["bash", str(build_script())],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
