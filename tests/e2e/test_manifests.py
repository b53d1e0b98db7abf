"""Every Kubernetes manifest under deploy/ is accepted by a v1.36.3 API server (server-side dry run).

`kubectl apply --dry-run=server -f <file>` runs the whole admission chain and validation without
storing anything. Which files count: YAML documents with apiVersion and kind that are not component
configuration (KubeSchedulerConfiguration, kustomize, kind) — see gpuplace.localcluster.manifests.
deploy/local (the Go wrapper modules of the harness) holds no manifests. Kustomization folders are
also built and dry-run with `kubectl apply -k`. Namespaces the manifests use are created first (a
dry run of a Namespace creates nothing, and namespaced objects need theirs to exist).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane, manifests

pytestmark = pytest.mark.e2e

FILES = [f for f in manifests.yaml_files() if f.objects]
KUSTOMIZATIONS = sorted(
    {f.path.parent for f in manifests.yaml_files() if f.path.name in ("kustomization.yaml", "kustomization.yml")}
)


def _rel(path: Path) -> str:
    return str(path.relative_to(manifests.deploy_dir()))


def test_deploy_has_manifests() -> None:
    assert FILES, f"no Kubernetes manifests found under {manifests.deploy_dir()}"
    unreadable = [f"{_rel(f.path)}: {f.error}" for f in manifests.yaml_files() if f.error]
    assert not unreadable
    mixed = [_rel(f.path) for f in FILES if f.others]
    assert not mixed, f"files mixing Kubernetes objects with other documents: {mixed}"


async def _ensure_namespaces(cp: ControlPlane) -> None:
    wanted = {"gpuplace-system"}
    for f in FILES:
        for obj in f.objects:
            ns = (obj.get("metadata") or {}).get("namespace")
            if ns:
                wanted.add(str(ns))
            if obj.get("kind") == "Namespace":
                wanted.add(str(obj["metadata"]["name"]))
    async with cp.api_client() as api:
        core = client.CoreV1Api(api)
        for name in sorted(wanted):
            try:
                await core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
            except ApiException as exc:
                if exc.status != 409:
                    raise


@pytest.mark.parametrize("path", [f.path for f in FILES], ids=[_rel(f.path) for f in FILES])
async def test_manifest_server_dry_run(control_plane: ControlPlane, path: Path) -> None:
    await _ensure_namespaces(control_plane)
    result = await asyncio.to_thread(
        control_plane.kubectl, "apply", "--dry-run=server", "-f", str(path), check=False
    )
    assert result.returncode == 0, f"{_rel(path)}:\n{result.stdout}\n{result.stderr}"
    objects = next(f.objects for f in FILES if f.path == path)
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=[_rel(d) for d in KUSTOMIZATIONS])
async def test_kustomization_server_dry_run(control_plane: ControlPlane, directory: Path) -> None:
    await _ensure_namespaces(control_plane)
    result = await asyncio.to_thread(
        control_plane.kubectl, "apply", "--dry-run=server", "-k", str(directory), check=False
    )
    assert result.returncode == 0, f"{_rel(directory)}:\n{result.stdout}\n{result.stderr}"
