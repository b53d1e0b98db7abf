"""A real Prometheus (v3.16.0, built by deploy/local/build-tools.sh) scraping gpuplace and kube-scheduler.

There is no pod network, so Prometheus scrapes static targets: the module's `gpuplace serve` (extender
HTTPS, with the webhook's metrics in the same registry) and kube-scheduler's secure port (admin token),
as a ServiceMonitor would scrape their pods. After some GPU pods went through the webhook, filter and
bind, the vector selector of every alert (files/alerts.yaml) and every dashboard panel
(files/dashboard.json) must return series: an alert or panel written against a metric or label gpuplace
does not export would stay silent forever. The selectors are taken from Prometheus' own parser
(/api/v1/parse_query), not from a regular expression.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, ManagedProcess
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import free_port
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound
from tests.deploy import chart
from tests.e2e.helpers import NodeFactory, owner

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gpuplace_scheduler")]


@pytest.fixture(scope="module")
def prometheus(
    control_plane: ControlPlane, gpuplace: GpuplaceServer, gpuplace_scheduler: ManagedProcess
) -> Iterator[str]:
    binary = chart.tool("prometheus")
    port = free_port()
    token = control_plane.workdir / "prometheus-token"
    token.write_text(control_plane.admin_token)
    tls = {"ca_file": str(control_plane.ca_file)}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "gpuplace", "scheme": "https", "tls_config": tls,
             "static_configs": [{"targets": [f"127.0.0.1:{gpuplace.extender_port}"]}]},
            {"job_name": "kube-scheduler", "scheme": "https", "tls_config": {**tls, "insecure_skip_verify": True},
             "authorization": {"credentials_file": str(token)},
             "static_configs": [{"targets": [f"127.0.0.1:{gpuplace_scheduler.extra['port']}"]}]},
        ],
    }  # fmt: skip
    config_file = control_plane.workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    argv = [
        str(binary), f"--config.file={config_file}", f"--storage.tsdb.path={control_plane.workdir / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    process = control_plane.start_process("prometheus", argv, ready_url=f"{base}/-/ready", ready_timeout=60)
    yield base
    control_plane.stop_process(process.name)


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def _selectors(node: Any) -> list[str]:
    """Vector selectors in a parse_query AST, written back as PromQL."""
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") in ("vectorSelector", "matrixSelector"):
            matchers = ",".join(f'{m["name"]}{m["type"]}"{m["value"]}"' for m in node["matchers"])
            out.append("{" + matchers + "}")
        for value in node.values():
            out += _selectors(value)
    elif isinstance(node, list):
        for value in node:
            out += _selectors(value)
    return out


def _expressions() -> dict[str, str]:
    alerts = yaml.safe_load((chart.CHART / "files" / "alerts.yaml").read_text())
    exprs = {f"alert {r['alert']}": r["expr"] for g in alerts["groups"] for r in g["rules"]}
    board = json.loads((chart.CHART / "files" / "dashboard.json").read_text())
    exprs |= {f"panel {p['title']}": p["targets"][0]["expr"] for p in board["panels"]}
    return exprs


async def test_every_alert_and_dashboard_selector_returns_series(
    prometheus: str, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory, e2e_report: Any
) -> None:
    mine = owner(namespace)
    await node_factory("hgx-h100", labels=mine, topology=True)
    names = []
    for i, gpus in enumerate((1, 2, 4)):
        await create_pod(k8s, namespace, pod_manifest(f"p{i}", gpus=gpus, node_selector=mine))
        names.append(f"p{i}")
    big = pod_manifest(
        "too-big", gpus=1, node_selector=mine, annotations={"gpuplace.io/gpu-memory-mib": "200000"}
    )
    await create_pod(k8s, namespace, big)  # fits kube-scheduler's count; gpuplace's filter rejects it
    denied = pod_manifest("conflict", gpus=1, node_selector=mine)
    denied["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"  # webhook denies
    with pytest.raises(client.exceptions.ApiException):
        await create_pod(k8s, namespace, denied)
    await wait_bound(k8s, namespace, names, within=60)

    exprs = _expressions()
    selectors = {
        s: what for what, e in exprs.items() for s in _selectors(_api(prometheus, "parse_query", query=e))
    }
    assert len(selectors) >= 12

    async def present() -> bool:
        return not [s for s in selectors if not _api(prometheus, "query", query=f"count({s})")["result"]]

    try:
        await wait_until(
            present, within=60, interval=1, what="every alert and dashboard selector to return series"
        )
    except Exception:
        missing = [
            f"{selectors[s]}: {s}"
            for s in selectors
            if not _api(prometheus, "query", query=f"count({s})")["result"]
        ]
        raise AssertionError(f"selectors without series: {missing}") from None
    for expr in exprs.values():  # and every whole expression evaluates without error
        _api(prometheus, "query", query=expr)
    e2e_report(
        f"Prometheus 3.16.0 scraping gpuplace + kube-scheduler: {len(selectors)} selectors of {len(exprs)} alerts/panels all return series"
    )
