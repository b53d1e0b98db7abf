"""The Helm chart: lints, renders both modes, equals the kustomize base, and ships configs gpuplace loads.

Why compare against kustomize: both are supported install paths and must not drift. The only
differences allowed are what Helm adds for its release bookkeeping (chart.HELM_ONLY_LABELS, the
checksum/config pod annotations) and the Namespace, which `helm install --create-namespace` makes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gpuplace.config import GpuplaceConfig
from placement_core import MODELS
from scheduler.settings import SchedulerSettings
from tests.deploy import chart

DEPLOY = chart.ROOT / "deploy"


def _without(objs: dict[chart.ObjKey, dict], *kinds_names: tuple[str, str]) -> dict[chart.ObjKey, dict]:
    return {k: v for k, v in objs.items() if (k[1], k[3]) not in kinds_names}


def _diff(a: dict[chart.ObjKey, dict], b: dict[chart.ObjKey, dict]) -> str:
    lines = [f"only in helm: {k}" for k in a.keys() - b.keys()]
    lines += [f"only in kustomize: {k}" for k in b.keys() - a.keys()]
    for k in sorted(a.keys() & b.keys()):
        if a[k] != b[k]:
            lines.append(f"differs: {k}\n  helm:      {a[k]}\n  kustomize: {b[k]}")
    return "\n".join(lines)


@pytest.mark.parametrize(
    "sets",
    [(), ("mode=second-scheduler",), ("certificates.mode=cert-manager",)],
    ids=["extender", "second-scheduler", "cert-manager"],
)
def test_helm_lint_is_clean(helm: Path, sets: tuple[str, ...]) -> None:
    argv: list[str | Path] = [helm, "lint", "--strict", chart.CHART]
    for s in sets:
        argv += ["--set", s]
    result = chart.run(argv)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout + result.stderr


def test_default_values_render_the_kustomize_base(helm: Path, kubectl: Path) -> None:
    rendered = chart.by_key(chart.helm_template(helm))
    base = _without(
        chart.by_key(chart.kustomize(kubectl, DEPLOY / "gpuplace")), ("Namespace", "gpuplace-system")
    )
    assert rendered == base, _diff(rendered, base)


def test_second_scheduler_mode_renders_the_overlay(helm: Path, kubectl: Path) -> None:
    rendered = chart.by_key(chart.helm_template(helm, "mode=second-scheduler"))
    base = _without(
        chart.by_key(chart.kustomize(kubectl, DEPLOY / "gpuplace")),
        ("Namespace", "gpuplace-system"),
        ("ConfigMap", "gpuplace-kube-scheduler"),  # mode extender only: the fragment to merge by hand
    )
    base |= chart.by_key(chart.kustomize(kubectl, DEPLOY / "second-scheduler"))
    assert rendered == base, _diff(rendered, base)


def test_unknown_mode_is_refused_with_its_name(helm: Path) -> None:
    result = chart.run([helm, "template", "gpuplace", chart.CHART, "--set", "mode=sidecar"])
    assert (
        result.returncode != 0 and 'mode must be extender or second-scheduler, not "sidecar"' in result.stderr
    )


def _catalog_resources() -> set[str]:
    s = SchedulerSettings()
    return {s.gpu_resource} | {
        f"{s.mig_resource_prefix}{p.resource_suffix}" for m in MODELS.values() for p in m.mig_profiles
    }


def _extender_entries(objs: list[dict]) -> list[dict]:
    out = []
    for o in objs:
        if o["kind"] == "ConfigMap":
            for v in o["data"].values():
                doc = yaml.safe_load(v)
                if isinstance(doc, dict) and doc.get("kind") == "KubeSchedulerConfiguration":
                    out += doc["extenders"]
    return out


def test_managed_resources_are_the_catalog_in_one_place(helm: Path) -> None:
    listed = yaml.safe_load((chart.CHART / "files" / "managed-resources.yaml").read_text())
    assert len(listed) == len(set(listed)) and set(listed) == _catalog_resources()
    marker = {"name": "gpuplace.io/dra-gpu", "ignoredByScheduler": True}  # the webhook's DRA marker, last
    for mode in ("extender", "second-scheduler"):
        (entry,) = _extender_entries(chart.helm_template(helm, f"mode={mode}"))
        assert [r["name"] for r in entry["managedResources"][:-1]] == listed
        assert all(r["ignoredByScheduler"] is False for r in entry["managedResources"][:-1])
        assert entry["managedResources"][-1] == marker
    templates = "".join(p.read_text() for p in (chart.CHART / "templates").iterdir())
    assert "nvidia.com/mig-1g" not in templates  # no second copy of the list in a template
    (entry,) = _extender_entries(
        chart.helm_template(helm, "scheduler.extraManagedResources={example.com/gpu}")
    )
    assert [r["name"] for r in entry["managedResources"]] == [*listed, "example.com/gpu", marker["name"]]


def test_the_dra_marker_follows_the_webhook_setting(helm: Path) -> None:
    """One source: the marker kube-scheduler routes to gpuplace is the one the webhook writes."""
    (entry,) = _extender_entries(chart.helm_template(helm, "webhook.settings.dra.marker_resource=example.com/dra"))
    assert entry["managedResources"][-1] == {"name": "example.com/dra", "ignoredByScheduler": True}
    (entry,) = _extender_entries(chart.helm_template(helm, "webhook.settings.dra.marker_resource=null"))
    assert all(r["ignoredByScheduler"] is False for r in entry["managedResources"])


@pytest.mark.parametrize("mode", ["extender", "second-scheduler"])
@pytest.mark.parametrize("certs", ["self-managed", "cert-manager"])
def test_no_webhook_registration_is_rendered_as_an_object(helm: Path, mode: str, certs: str) -> None:
    """A rendered MutatingWebhookConfiguration would be registered before any replica serves (Fail →
    every GPU pod rejected meanwhile). The chart ships it for gpuplace to register (registration.py)."""
    objs = chart.helm_template(helm, f"mode={mode}", f"certificates.mode={certs}")
    assert not [o for o in objs if o["kind"].endswith("WebhookConfiguration")]
    (cm,) = [
        o
        for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gpuplace-webhook-registration"
    ]
    mwc = yaml.safe_load(cm["data"]["mutatingwebhookconfiguration.yaml"])
    assert mwc["kind"] == "MutatingWebhookConfiguration"
    (hook,) = mwc["webhooks"]
    assert hook["failurePolicy"] == "Fail" and "caBundle" not in hook["clientConfig"]
    assert hook["clientConfig"]["service"] == {
        "name": "gpuplace-webhook",
        "namespace": "gpuplace-system",
        "path": "/mutate",
        "port": 443,
    }


@pytest.mark.parametrize("certs", ["self-managed", "cert-manager"])
def test_rendered_configs_are_valid_gpuplace_configs(helm: Path, certs: str) -> None:
    """Each Deployment's --config file, as rendered, passes gpuplace's own validation (extra keys forbidden)."""
    objs = chart.helm_template(
        helm, f"certificates.mode={certs}", "extender.leaderElection.lease_duration_seconds=20"
    )
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gpuplace-config"]
    extender = GpuplaceConfig(**yaml.safe_load(cm["data"]["extender.yaml"]))
    assert extender.leader_election.enabled and extender.leader_election.lease_duration_seconds == 20
    assert extender.scheduler.enabled and not extender.webhook_server.enabled
    webhook = GpuplaceConfig(**yaml.safe_load(cm["data"]["webhook.yaml"]))
    assert not webhook.scheduler.enabled and webhook.webhook_server.enabled
    assert webhook.webhook_server.certificates.mode == certs
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    for name, file in (("gpuplace-extender", "extender.yaml"), ("gpuplace-webhook", "webhook.yaml")):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", "--config", f"/etc/gpuplace/{file}"]


def _value_paths(values: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in values.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("resources", "labels", "issuerRef", "podDisruptionBudget"):
            out += _value_paths(v, f"{path}.")
        else:
            out.append(path)
    return out


def test_chart_readme_lists_every_value() -> None:
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    readme = (chart.CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    missing = [p for p in _value_paths(values) if p not in documented]
    assert not missing, f"values not in the chart README's table: {missing}"
