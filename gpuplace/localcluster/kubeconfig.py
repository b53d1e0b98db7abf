"""Kubeconfig files for bearer-token identities against the local apiserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpuplace.localcluster.pki import write_private


def kubeconfig_dict(
    *, server: str, ca_file: Path, token: str, user: str, context: str = "local"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "local", "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: Path, *, server: str, ca_file: Path, token: str, user: str) -> Path:
    """Write a kubeconfig (mode 0600: it holds a token) and return its path."""
    text = yaml.safe_dump(kubeconfig_dict(server=server, ca_file=ca_file, token=token, user=user))
    write_private(path, text.encode())
    return path
