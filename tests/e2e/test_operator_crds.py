"""The chart's cert-manager and Prometheus Operator objects against those operators' real CRDs.

Neither operator runs here; their CustomResourceDefinitions (pinned in deploy/local/crds/go.mod,
gpuplace/localcluster/crds.py) are installed into the control plane, so a server-side dry run checks
every field of the Issuers, Certificates, ServiceMonitor, PodMonitor and PrometheusRule against the
operators' OpenAPI schemas, and `--api-versions` shows the chart renders them when the APIs exist.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from gpuplace.localcluster import ControlPlane, crds
from tests.deploy import chart

pytestmark = pytest.mark.e2e
MONITORING_APIS = [
    f"monitoring.coreos.com/v1/{k}" for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule")
]


@pytest.fixture(scope="module")
def operator_crds(control_plane: ControlPlane) -> list[str]:
    names = []
    for module in (crds.CERT_MANAGER, crds.PROMETHEUS_OPERATOR):
        for path in crds.crd_files(module):
            control_plane.kubectl("apply", "--server-side", "-f", str(path))
            names.append(yaml.safe_load(path.read_text())["metadata"]["name"])
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]
    )
    control_plane.kubectl("create", "namespace", chart.NAMESPACE, check=False)
    return names


@pytest.mark.parametrize("issuer", ["own CA", "existing ClusterIssuer"])
async def test_cert_manager_objects_pass_server_dry_run(
    control_plane: ControlPlane, operator_crds: list[str], issuer: str
) -> None:
    sets = ["certificates.mode=cert-manager"]
    if issuer != "own CA":
        sets += [
            "certificates.certManager.issuerRef.name=corp-ca",
            "certificates.certManager.issuerRef.kind=ClusterIssuer",
        ]
    objs = chart.helm_template(chart.tool("helm"), *sets)
    cm = [o for o in objs if o["apiVersion"].startswith("cert-manager.io/")]
    assert {o["kind"] for o in cm} == ({"Issuer", "Certificate"} if issuer == "own CA" else {"Certificate"})
    await _dry_run(control_plane, objs)


async def test_monitoring_objects_render_with_the_crds_and_pass_server_dry_run(
    control_plane: ControlPlane, operator_crds: list[str]
) -> None:
    helm = chart.tool("helm")
    assert not [o for o in chart.helm_template(helm) if o["apiVersion"].startswith("monitoring.coreos.com/")]
    objs = chart.helm_template(helm, "monitoring.podMonitor=auto", api_versions=MONITORING_APIS)
    kinds = {o["kind"] for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")}
    assert kinds == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    await _dry_run(control_plane, objs)


async def _dry_run(cp: ControlPlane, objs: list[dict]) -> None:
    result = await asyncio.to_thread(
        cp.kubectl, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objs), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objs), result.stdout


def test_crd_pins_are_read_from_the_go_module_file() -> None:
    assert crds.pinned_version(crds.CERT_MANAGER) == "v1.21.2"
    assert all(isinstance(p, Path) for p in crds.crd_files(crds.PROMETHEUS_OPERATOR))
