"""kube-scheduler as the local control plane starts it: its configuration file and command line.

With ``--config``, kube-scheduler ignores ``--kubeconfig``: the identity goes into
``clientConnection.kubeconfig``, and leader election is off unless the configuration says otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


def write_config(path: Path, scheduler_config: Mapping[str, Any] | None, *, kubeconfig: Path) -> Path:
    """A KubeSchedulerConfiguration (v1) from a dict, with ``clientConnection.kubeconfig`` and
    ``leaderElection.leaderElect: false`` filled in unless present."""
    cfg = copy.deepcopy(dict(scheduler_config or {}))
    cfg.setdefault("apiVersion", "kubescheduler.config.k8s.io/v1")
    cfg.setdefault("kind", "KubeSchedulerConfiguration")
    cfg.setdefault("clientConnection", {}).setdefault("kubeconfig", str(kubeconfig))
    cfg.setdefault("leaderElection", {}).setdefault("leaderElect", False)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def scheduler_argv(
    binary: Path, *, config_file: Path, kubeconfig: Path, pki: Path, port: int, extra_args: Sequence[str] = ()
) -> list[str]:
    """kube-scheduler serving on ``127.0.0.1:port`` (its /healthz, /readyz and, with a token, /metrics)."""
    return [
        str(binary),
        f"--config={config_file}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'kube-scheduler.crt'}",
        f"--tls-private-key-file={pki / 'kube-scheduler.key'}",
        # delegated authn/z so /metrics works with a token; /healthz and /readyz are always allowed
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # no front-proxy CA in this cluster: do not look up requestheader config (log noise)
        "--authentication-skip-lookup=true",
        "--v=2",
        *extra_args,
    ]
