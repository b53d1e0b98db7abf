"""Rendering the Helm chart and the kustomize base for the tests, and comparing their objects.

`helm` comes from deploy/local/build-tools.sh (Go module proxy); `kubectl kustomize` from the control
plane's kubectl (deploy/local/build.sh). In CI (`CI=true`) a missing tool is built, and a failed build
fails the test; elsewhere the tests are skipped with the command to run, unless GPUPLACE_E2E=1.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuplace.localcluster import binaries, tools

ROOT = binaries.repo_root()
CHART = ROOT / "deploy" / "helm" / "gpuplace"
NAMESPACE = "gpuplace-system"
# Labels only Helm adds (release bookkeeping); everything else must be equal.
HELM_ONLY_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
)
ObjKey = tuple[str, str, str, str]


def tool(name: str) -> Path:
    """The path of a build-tools.sh tool, building it when allowed (see module docstring)."""
    if os.environ.get(tools.ENV_TOOLS_DIR):
        if not tools.present(name):
            pytest.fail(f"{tools.ENV_TOOLS_DIR} is set but has no {name}")
        return tools.path(name)
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not tools.present(name) and not in_ci and os.environ.get("GPUPLACE_E2E", "") in ("", "0"):
        pytest.skip(
            f"{name} is not built: run `bash deploy/local/build-tools.sh {name}` (or set GPUPLACE_E2E=1)"
        )
    result = tools.build(name)
    if result.returncode != 0:
        pytest.fail(
            f"build-tools.sh {name} failed:\n{(result.stdout + result.stderr)[-4000:]}", pytrace=False
        )
    return tools.path(name)


def kubectl() -> Path:
    try:
        return binaries.Binaries.locate().kubectl
    except binaries.BinariesMissingError as e:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(str(e))


def run(argv: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/gpuplace-helm/cache", "HELM_CONFIG_HOME": "/tmp/gpuplace-helm/config",
           "HELM_DATA_HOME": "/tmp/gpuplace-helm/data"}  # fmt: skip
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, env=env, **kw)


def helm_template(
    helm: Path, *sets: str, namespace: str = NAMESPACE, api_versions: Iterable[str] = ()
) -> list[dict[str, Any]]:
    argv: list[str | Path] = [helm, "template", "gpuplace", CHART, "--namespace", namespace]
    for s in sets:
        argv += ["--set", s]
    for a in api_versions:
        argv += ["--api-versions", a]
    result = run(argv)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def kustomize(kubectl_path: Path, directory: Path) -> list[dict[str, Any]]:
    result = run([kubectl_path, "kustomize", directory])
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def key(obj: dict[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _parse_embedded(value: str) -> Any:
    """ConfigMap values that are YAML documents compare as data (comments and key order aside)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what only Helm adds: its release labels and the checksum/* pod annotations."""
    out = copy.deepcopy(obj)
    for meta in (out.get("metadata"), ((out.get("spec") or {}).get("template") or {}).get("metadata")):
        if not meta:
            continue
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_ONLY_LABELS}
        meta.pop("labels", None)
        if labels:
            meta["labels"] = labels
        notes = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("checksum/")}
        meta.pop("annotations", None)
        if notes:
            meta["annotations"] = notes
    if out["kind"] == "ConfigMap":
        out["data"] = {k: _parse_embedded(v) for k, v in (out.get("data") or {}).items()}
    return out


def by_key(objs: Iterable[dict[str, Any]]) -> dict[ObjKey, dict[str, Any]]:
    return {key(o): normalized(o) for o in objs}


# ----- gpuplace processes started from what the chart renders --------------------------------------


def rendered(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def container_of(objs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (container,) = rendered(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def local_process(
    objs: list[dict[str, Any]],
    deployment: str,
    *,
    workdir: Path,
    kubeconfig: Path,
    pod_name: str,
    ports: dict[str, int],
    overrides: dict[str, Any] | None = None,
    shared: dict[str, Path] | None = None,
) -> tuple[list[str], dict[str, str | None]]:
    """argv and env for running `deployment`'s container here as a process, from the rendered objects.

    What stands in for the kubelet, and nothing else changes: the container's args with the config
    path mapped to a file in `workdir`; that file is the ConfigMap's, with `kubernetes.kubeconfig` (the
    pod's ServiceAccount), loopback listen addresses and the given `ports`, and every mounted path
    (ConfigMaps, emptyDirs) mapped under `workdir`; the container's env, downward-API fields resolved
    (`pod_name`, the namespace). `overrides` (a nested dict) is merged last for test-only settings.
    `shared` maps a volume name to one directory for every process (e.g. `numba-cache`: the kernels
    the first process compiled stand in for the image's baked cache, which the entrypoint copies in).
    """
    container = container_of(objs, deployment)
    spec = rendered(objs, "Deployment", deployment)["spec"]["template"]["spec"]
    namespace = rendered(objs, "Deployment", deployment)["metadata"]["namespace"]
    mounts: dict[str, Path] = {}
    for m in container.get("volumeMounts") or []:
        (volume,) = [v for v in spec["volumes"] if v["name"] == m["name"]]
        local = (shared or {}).get(m["name"]) or workdir / pod_name / m["name"]
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            cm = rendered(objs, "ConfigMap", volume["configMap"]["name"])
            for k, v in cm["data"].items():
                (local / k).write_text(v)
        mounts[m["mountPath"]] = local

    def local_path(p: str) -> str:
        for mount, there in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if p == mount or p.startswith(mount + "/"):
                return str(there / p[len(mount) :].lstrip("/"))
        return p

    args = list(container["args"])
    config_index = args.index("--config") + 1
    config = yaml.safe_load(Path(local_path(args[config_index])).read_text())
    for section, port_key in (
        ("scheduler", "port"),
        ("webhook_server", "port"),
        ("webhook_server", "ops_port"),
    ):
        sec = config.get(section) or {}
        if sec.get("enabled") and port_key in sec:
            sec["host"] = "127.0.0.1"
            sec[port_key] = ports[f"{section}.{port_key}"]

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return local_path(value) if isinstance(value, str) and value.startswith("/") else value

    config = _merge(walk(config), overrides or {})
    config.setdefault("kubernetes", {})["kubeconfig"] = str(kubeconfig)
    config_file = workdir / pod_name / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    args[config_index] = str(config_file)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GPUPLACE_")}
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = local_path(e["value"])
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    env["PYTHONUNBUFFERED"] = "1"
    import sys

    return [sys.executable, "-m", "gpuplace.cli", *args], env


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = (
            _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
        )
    return out
