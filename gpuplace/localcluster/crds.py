"""CustomResourceDefinitions of cert-manager and the Prometheus Operator, from their Go modules.

The versions are pinned in ``deploy/local/crds/go.mod``. ``go mod download -json <module>@<version>``
fetches the module zip through the Go module proxy (verified against the checksum database) into the
module cache and says where it is; the CRDs are plain YAML inside it. No compilation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from gpuplace.localcluster.binaries import repo_root

CERT_MANAGER = "github.com/cert-manager/cert-manager"
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
_LOCATION = {
    CERT_MANAGER: ("deploy/crds", ("cert-manager.io_issuers.yaml", "cert-manager.io_clusterissuers.yaml",
                                   "cert-manager.io_certificates.yaml", "cert-manager.io_certificaterequests.yaml")),
    PROMETHEUS_OPERATOR: ("example/prometheus-operator-crd", ("monitoring.coreos.com_servicemonitors.yaml",
                          "monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")),
}  # fmt: skip


def pinned_version(module: str) -> str:
    text = (repo_root() / "deploy" / "local" / "crds" / "go.mod").read_text()
    match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", text, flags=re.M)
    if match is None:
        raise KeyError(f"{module} is not pinned in deploy/local/crds/go.mod")
    return match.group(1)


def crd_files(module: str, *, timeout: float = 600.0) -> list[Path]:
    """The CRD files gpuplace's chart needs from `module` (downloaded on first use)."""
    version = pinned_version(module)
    go = os.environ.get("GO") or "go"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd="/",
    )  # fmt: skip
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module}@{version} failed: {info.get('Error') or result.stderr}")
    subdir, names = _LOCATION[module]
    return [Path(info["Dir"]) / subdir / name for name in names]
