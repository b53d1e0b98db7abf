"""Fixtures for tests against a real control plane: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler v1.36.3, with kwok playing the kubelet of every fake node.

Binaries come from ``deploy/local/build.sh`` (Go module proxy; ~4 min cold, instant when built).
- CI (``CI=true``): the build must succeed, else the session fails (never a silent skip).
- Elsewhere: if the binaries are missing and ``GPUPLACE_E2E`` is unset, e2e tests are skipped with
  the command to run; with ``GPUPLACE_E2E=1`` they are built first.
- ``GPUPLACE_LOCAL_BIN=/dir`` uses binaries from that folder and skips the build.

One control plane per session (a few seconds to start). Bound pods become Running and finish when
their ``gpuplace.io/kwok-duration`` says (gpuplace.localcluster.lifecycle). Cluster-scoped state is
shared between tests, so: use ``namespace`` (fresh per test, usable for pods when yielded; its pods
are deleted with grace period 0 and the namespace deleted afterwards), create nodes with
``node_factory`` (schedulable when it returns, deleted afterwards), and run at most one scheduler for the default
``schedulerName`` at a time (``default_scheduler`` is module-scoped; stop it before starting an
extender-configured one with ``control_plane.start_scheduler(config)``).

gpuplace itself (``gpuplace serve``: extender + webhook, its own ServiceAccount, the webhook
registered from deploy/) is the module-scoped ``gpuplace`` fixture; ``gpuplace_scheduler`` is
kube-scheduler with gpuplace as its extender (module-scoped too: never combine it with
``default_scheduler`` in one module). Tests add lines to the end-of-run summary with ``e2e_report``.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane, ManagedProcess, binaries
from gpuplace.localcluster.fake_nodes import create_node, delete_nodes, node_manifest, wait_schedulable
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.lifecycle import wait_namespace_usable

HERE = Path(__file__).parent
NodeFactory = Callable[..., Awaitable[str]]
_REPORT: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: needs the real control plane (kube-apiserver, kube-scheduler, etcd) built by deploy/local/build.sh",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT:
        terminalreporter.section("gpuplace e2e measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def e2e_report() -> Callable[[str], None]:
    """Add a line to the summary printed at the end of the run (measurements worth quoting)."""
    return _REPORT.append


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def local_binaries() -> binaries.Binaries:
    """Upstream binaries, built (or checked up to date) by deploy/local/build.sh."""
    if os.environ.get(binaries.ENV_BIN_DIR):
        return binaries.Binaries.locate()
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not in_ci and not _truthy("GPUPLACE_E2E") and not binaries.present():
        pytest.skip(
            "e2e binaries are not built: run `make e2e-binaries` (bash deploy/local/build.sh, ~4 min "
            "the first time) or set GPUPLACE_E2E=1 to build them from the test run"
        )
    result = binaries.build()
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        pytest.fail(f"deploy/local/build.sh failed with status {result.returncode}:\n{output}", pytrace=False)
    return binaries.Binaries.locate()


@pytest.fixture(scope="session")
def control_plane(local_binaries: binaries.Binaries) -> Iterator[ControlPlane]:
    with ControlPlane(bin_dir=local_binaries.kubectl.parent) as cp:
        yield cp


@pytest.fixture(scope="module")
def default_scheduler(control_plane: ControlPlane) -> Iterator[ManagedProcess]:
    """Upstream kube-scheduler with the default profile (no extender)."""
    process = control_plane.start_scheduler(name="kube-scheduler-default")
    yield process
    control_plane.stop_process(process.name)


@pytest.fixture(scope="module")
def gpuplace(control_plane: ControlPlane) -> Iterator[GpuplaceServer]:
    """``gpuplace serve`` with its ServiceAccount and webhook registration from deploy/ (module-scoped)."""
    with GpuplaceServer(control_plane) as server:
        yield server


@pytest.fixture(scope="module")
def gpuplace_scheduler(control_plane: ControlPlane, gpuplace: GpuplaceServer) -> Iterator[ManagedProcess]:
    """Upstream kube-scheduler with gpuplace registered as its extender (deploy/scheduler's entry)."""
    process = control_plane.start_scheduler(gpuplace.scheduler_config(), name="kube-scheduler-gpuplace")
    yield process
    control_plane.stop_process(process.name)


@pytest.fixture
async def k8s(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin kubernetes_asyncio ApiClient in the test's event loop."""
    async with control_plane.api_client() as api:
        yield api


@pytest.fixture
async def namespace(k8s: client.ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists (the ServiceAccount admission plugin
    rejects pods until then)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s)
    body: Any = {"metadata": {"name": name, "labels": {"gpuplace.io/e2e": "true"}}}
    await core.create_namespace(body)
    await wait_namespace_usable(k8s, name)
    yield name
    await core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    try:
        await core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
async def node_factory(k8s: client.ApiClient) -> AsyncIterator[NodeFactory]:
    """``await node_factory(preset, name=None, **node_manifest_kwargs) -> node name``, once the node is
    schedulable (Ready, the not-ready taint removed); deleted after the test."""
    created: list[str] = []

    async def make(preset: str, name: str | None = None, **kwargs: Any) -> str:
        node_name = name or f"{preset}-{secrets.token_hex(3)}"
        created.append(node_name)
        await create_node(k8s, node_manifest(node_name, preset, **kwargs))
        await wait_schedulable(k8s, [node_name])
        return node_name

    yield make
    await delete_nodes(k8s, created)
