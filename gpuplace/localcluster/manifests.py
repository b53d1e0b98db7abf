"""The YAML under deploy/: which documents are Kubernetes objects, and the ones the harness reuses.

The local control plane runs gpuplace with the manifests users apply, not with copies: the RBAC rules
of its ServiceAccount, the MutatingWebhookConfiguration and the extender entry of the
KubeSchedulerConfiguration are read from deploy/ and only the parts that name a place are changed
(loopback URL instead of the in-cluster Service, the harness CA as caBundle / caFile).

A document is a Kubernetes *object* when it has ``apiVersion`` and ``kind`` and is not a component
configuration: kubescheduler/kubelet/apiserver ``*.config.k8s.io`` groups, kustomize's
``Kustomization``/``Component``, kind's ``Cluster`` (``kind.x-k8s.io``), kubeconfig ``Config`` files,
Helm ``Chart.yaml`` (``apiVersion: v2`` without ``kind``). Other files (go.mod, README, values files)
have no such documents and are ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpuplace.localcluster.binaries import repo_root

YAML_SUFFIXES = (".yaml", ".yml")
# Folders under deploy/ that hold no plain manifests (the Go wrapper modules and their build output; the Helm chart).
SKIP_DIRS = ("local", "helm")  # helm: chart templates are not YAML until rendered (tests/deploy)
_CONFIG_KINDS = {
    ("v1", "Config"),  # kubeconfig
}


def deploy_dir() -> Path:
    return repo_root() / "deploy"


@dataclass(frozen=True)
class YamlFile:
    path: Path
    documents: tuple[Any, ...]
    error: str | None = None  # not parseable as YAML (e.g. a Helm template)

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [d for d in self.documents if is_kubernetes_object(d)]

    @property
    def others(self) -> list[Any]:
        return [d for d in self.documents if d is not None and not is_kubernetes_object(d)]


def api_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_kubernetes_object(doc: Any) -> bool:
    """An object the API server can take (see module docstring for what is excluded)."""
    if not isinstance(doc, Mapping):
        return False
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return False
    group = api_group(api_version)
    if group == "config.k8s.io" or group.endswith(".config.k8s.io"):
        return False  # component configuration (KubeSchedulerConfiguration, Kustomization, ...)
    if group == "kind.x-k8s.io":
        return False
    return (api_version, kind) not in _CONFIG_KINDS


def read_yaml(path: Path) -> YamlFile:
    try:
        docs = tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    except yaml.YAMLError as exc:
        return YamlFile(path, (), f"not YAML: {exc}")
    return YamlFile(path, docs)


def yaml_files(root: Path | None = None) -> Iterator[YamlFile]:
    """Every .yaml/.yml file under ``root`` (default deploy/), recursively, sorted, minus SKIP_DIRS."""
    base = root or deploy_dir()
    for path in sorted(base.rglob("*")):
        if path.suffix not in YAML_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(base).parts
        if root is None and rel and rel[0] in SKIP_DIRS:
            continue
        yield read_yaml(path)


def objects_of_kind(kinds: set[str], root: Path | None = None) -> list[dict[str, Any]]:
    return [d for f in yaml_files(root) for d in f.objects if d.get("kind") in kinds]


def scheduler_configurations(root: Path | None = None) -> list[dict[str, Any]]:
    """KubeSchedulerConfiguration documents under deploy/ (also inside ConfigMaps' data values)."""
    out: list[dict[str, Any]] = []
    for f in yaml_files(root):
        for doc in f.documents:
            if isinstance(doc, Mapping) and doc.get("kind") == "KubeSchedulerConfiguration":
                out.append(dict(doc))
            elif isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
                for value in (doc.get("data") or {}).values():
                    try:
                        inner = yaml.safe_load(value)
                    except yaml.YAMLError:
                        continue
                    if isinstance(inner, Mapping) and inner.get("kind") == "KubeSchedulerConfiguration":
                        out.append(dict(inner))
    return out


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: mappings key by key, anything else replaced (copies)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
