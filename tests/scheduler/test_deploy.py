"""The deploy/ snippets agree with the code: verbs, prefix, managed resources, RBAC verbs."""

from __future__ import annotations

from pathlib import Path

import yaml

from placement_core import MODELS
from scheduler.settings import SchedulerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scheduler"


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
    managed = {r["name"] for r in ext["managedResources"]}
    assert all(r["ignoredByScheduler"] is False for r in ext["managedResources"])
    wanted = {s.gpu_resource} | {
        f"{s.mig_resource_prefix}{p.resource_suffix}" for m in MODELS.values() for p in m.mig_profiles
    }
    assert managed == wanted


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
    assert grants[("", "pods")] == {"get", "list", "watch"}  # the record rides on the Binding
    assert grants[("", "pods/binding")] == {"create"}
    assert grants[("policy", "poddisruptionbudgets")] == {"list", "watch"}  # preempt's PDB count
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "gpuplace",
        "namespace": "gpuplace-system",
    }
