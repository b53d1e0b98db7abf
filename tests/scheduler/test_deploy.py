"""The deploy/ snippets agree with the code: verbs, prefix, managed resources, RBAC verbs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from placement_core import MODELS
from scheduler.settings import SchedulerSettings

ROOT = Path(__file__).resolve().parents[2] / "deploy"
DEPLOY = ROOT / "scheduler"


def _extender_entries(doc: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every kube-scheduler `extenders[]` entry in a YAML document, also inside ConfigMap data strings."""
    if isinstance(doc, dict):
        for entry in doc.get("extenders") or []:
            yield where, entry
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                for inner in yaml.safe_load_all(text):
                    yield from _extender_entries(inner, f"{where} data.{key}")
        for key, value in doc.items():
            if key not in ("extenders", "data"):
                yield from _extender_entries(value, where)
    elif isinstance(doc, list):
        for item in doc:
            yield from _extender_entries(item, where)


def catalog_managed_resources() -> set[str]:
    """nvidia.com/gpu and every MIG resource of every catalog model: what kube-scheduler must route to
    gpuplace, or pods asking for a missing one bypass it (HAMi #2564)."""
    s = SchedulerSettings()
    return {s.gpu_resource} | {
        f"{s.mig_resource_prefix}{p.resource_suffix}" for m in MODELS.values() for p in m.mig_profiles
    }


def test_every_managed_resource_list_in_deploy_is_the_catalog() -> None:
    """Issue 9 item 8: every kube-scheduler extender entry shipped under deploy/ (the merge snippet, the
    second scheduler's ConfigMap, anything added later) manages exactly the catalog's resources."""
    wanted = catalog_managed_resources()
    chart_list = ROOT / "helm" / "gpuplace" / "files" / "managed-resources.yaml"
    found = [
        (where, entry)
        for path in sorted(ROOT.rglob("*.y*ml"))
        if "templates" not in path.relative_to(ROOT).parts  # Helm templates: YAML only once rendered
        for doc in yaml.safe_load_all(path.read_text())
        for where, entry in _extender_entries(doc, str(path.relative_to(ROOT.parent)))
    ]
    assert {w.split(" ")[0] for w, _ in found} >= {
        "deploy/scheduler/kube-scheduler-config.yaml",
        "deploy/second-scheduler/scheduler.yaml",
    }
    # The chart's one list (both of its modes render it; tests/deploy/test_helm_chart.py checks that).
    found.append((str(chart_list.relative_to(ROOT.parent)), {"managedResources": [
        {"name": n, "ignoredByScheduler": False} for n in yaml.safe_load(chart_list.read_text())]}))  # fmt: skip
    marker = "gpuplace.io/dra-gpu"  # webhook.settings.DraSettings.marker_resource (tests/webhook/test_dra.py)
    for where, entry in found:
        resources = entry["managedResources"]
        if not where.startswith("deploy/helm"):  # the chart appends the marker in its template
            assert resources[-1] == {"name": marker, "ignoredByScheduler": True}, where
            resources = resources[:-1]
        listed = [r["name"] for r in resources]
        missing = sorted(wanted - set(listed))
        assert not missing, f"{where} misses: " + "".join(
            f"\n  - {{name: {n}, ignoredByScheduler: false}}" for n in missing
        )
        assert set(listed) == wanted and len(listed) == len(set(listed)), where
        assert all(r["ignoredByScheduler"] is False for r in resources), where


def test_kube_scheduler_config_matches_the_service() -> None:
    cfg = yaml.safe_load((DEPLOY / "kube-scheduler-config.yaml").read_text())
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1" and cfg["percentageOfNodesToScore"] == 100
    (ext,) = cfg["extenders"]
    s = SchedulerSettings()
    assert ext["urlPrefix"].endswith(f":{s.port}{s.url_prefix}")
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]) == (
        "filter",
        "prioritize",
        "bind",
        "preempt",
    )
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False and ext["weight"] > 0
    assert int(ext["httpTimeout"].rstrip("s")) > s.bind_timeout_seconds


def test_rbac_grants_what_the_service_calls() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    grants = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert grants[("", "nodes")] == {"get", "list", "watch"}
    assert grants[("", "pods")] == {"get", "list", "watch", "patch"}  # patch: gang nudges only
    assert grants[("", "configmaps")] == {"get", "list", "create", "update", "delete"}  # gang plans
    assert grants[("", "pods/binding")] == {"create"}
    assert grants[("policy", "poddisruptionbudgets")] == {"list", "watch"}  # preempt's PDB count
    for kind in ("resourceslices", "resourceclaims"):  # DRA mode's reflectors, and bind's claim read
        assert grants[("resource.k8s.io", kind)] == {"get", "list", "watch"}
    for group in ("scheduling.k8s.io", "scheduling.volcano.sh", "scheduling.x-k8s.io"):
        assert grants[(group, "podgroups")] == {"list", "watch"}  # gang sizes and TTLs
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "gpuplace",
        "namespace": "gpuplace-system",
    }
