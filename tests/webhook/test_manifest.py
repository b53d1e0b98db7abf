"""deploy/webhook: the registration says what the README promises, and RBAC covers what the code reads.

The CEL itself is compiled and evaluated by a real kube-apiserver in the control-plane tests; here it
must at least be there, name every managed resource form, and cover containers and init containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.http import MUTATE_PATH
from webhook.owners import RESOURCES
from webhook.settings import IMPLICIT_EXTENDED_RESOURCE_PREFIX, WebhookSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "webhook"


@pytest.fixture(scope="module")
def hook() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "mutatingwebhookconfiguration.yaml").read_text()))
    assert len(documents) == 1 and documents[0]["kind"] == "MutatingWebhookConfiguration"
    assert documents[0]["apiVersion"] == "admissionregistration.k8s.io/v1"
    [webhook] = documents[0]["webhooks"]
    return dict(webhook)


def test_policy_values(hook: dict[str, Any]) -> None:
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    settings = WebhookSettings()
    # Every read of a gang's resolution shares one budget; the rest of an answer takes milliseconds
    # (bench/webhook_latency.py). Keep at least half of timeoutSeconds as margin.
    assert settings.gang_lookup_budget_seconds <= hook["timeoutSeconds"] / 2
    # A claim pod's claims are resolved first (their own budget), then its gang: both inside the timeout.
    assert settings.gang_lookup_budget_seconds + settings.dra.lookup_budget_seconds <= hook["timeoutSeconds"] - 2


def test_only_pod_creation_in_user_namespaces(hook: dict[str, Any]) -> None:
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "gpuplace-system"],
            }
        ]
    }
    assert "objectSelector" not in hook


def test_service_reference(hook: dict[str, Any]) -> None:
    assert hook["clientConfig"]["service"] == {
        "name": "gpuplace-webhook",  # its own Service: the webhook is its own Deployment
        "namespace": "gpuplace-system",
        "path": MUTATE_PATH,
        "port": 443,
    }


def test_match_condition_names_every_managed_resource_form(hook: dict[str, Any]) -> None:
    [condition] = hook["matchConditions"]
    expression: str = condition["expression"]
    settings = WebhookSettings()
    assert expression.count(f"r == '{settings.gpu_resource}'") == 4
    assert expression.count(f"r.startsWith('{settings.mig_resource_prefix}')") == 4
    assert expression.count(f"r.startsWith('{IMPLICIT_EXTENDED_RESOURCE_PREFIX}')") == 4
    assert expression.startswith("(has(object.spec.resourceClaims) && object.spec.resourceClaims.size() > 0) || ")
    for field in (
        "object.spec.containers.exists(",
        "object.spec.initContainers.exists(",
        "c.resources.limits.exists(",
        "c.resources.requests.exists(",
    ):
        assert field in expression
    assert expression.count("(") == expression.count(")")
    assert "\t" not in expression


def test_rbac_grants_get_on_every_kind_the_webhook_reads() -> None:
    role, binding = yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text())
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if rule["verbs"] == ["get"]
    }
    assert granted == {(group, plural) for (group, _), plural in RESOURCES.items()}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gpuplace", "namespace": "gpuplace-system"}
    ]


def test_kustomization_ships_the_registration_for_gpuplace_to_apply() -> None:
    """The registration is not applied as a resource (a Fail webhook before anything serves it): it is
    a ConfigMap file gpuplace registers itself once it serves (gpuplace/registration.py)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["rbac.yaml"]
    [generator] = kustomization["configMapGenerator"]
    assert generator["files"] == ["mutatingwebhookconfiguration.yaml"]
