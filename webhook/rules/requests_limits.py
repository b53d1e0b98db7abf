"""Rule 2: GPU requests equal GPU limits, or the pod is denied with a message that says what to set.

Why: GPUs cannot be overcommitted, and kube-apiserver refuses any container that requests such a
resource without a limit, or with a request different from its limit (pkg/apis/core/validation/
validation.go, `validateResourceRequirements`: "Limit must be set for non overcommitable resources",
"must be equal to <resource> limit of <limit>"; overcommit is allowed only for native resources other
than hugepages, pkg/apis/core/helper `IsOvercommitAllowed`). Its message names neither the container nor
the fix, and for a Job the template is refused before any pod exists. This rule applies the same rule to
pods, earlier and with a precise message: requests without a limit and requests that differ from the
limit are denied, saying exactly which limit to set. It never adds a limit: the same container in a Job
template would be refused by the apiserver, and a bare pod must not be treated differently.

Only limits (the form users should write) is valid upstream: kube-apiserver copies limits into requests
when it defaults a Pod (pkg/apis/core/v1/defaults.go, `SetDefaults_Pod`), before admission. A pod that
reaches the webhook without that defaulting (a direct call) gets the same copy here, verbatim. Values
are compared as quantities ("1" equals "1000m").
"""

from __future__ import annotations

from typing import Any

from placement_core.quantity import same_quantity
from webhook.errors import MalformedReviewError
from webhook.resources import iter_containers
from webhook.rules import Findings, container_label
from webhook.settings import WebhookSettings

REASON = "requests_limits_conflict"


def overcommit_allowed(resource: str) -> bool:
    """Upstream `IsOvercommitAllowed`: a native resource (no domain, or a kubernetes.io domain) that is
    not hugepages. Extended resources such as nvidia.com/gpu never are."""
    native = "/" not in resource or "kubernetes.io/" in resource
    return native and not resource.startswith("hugepages-")


def apply(pod: dict[str, Any], *, settings: WebhookSettings, findings: Findings) -> None:
    for list_name, container in iter_containers(pod):
        resources = container.get("resources")
        if not resources:
            continue
        limits = _section(resources, "limits")
        requests = _section(resources, "requests")
        names = dict.fromkeys(name for name in (*limits, *requests) if settings.is_managed(name))
        for name in names:
            where = container_label(list_name, container)
            if name in limits and name in requests:
                if not same_quantity(requests[name], limits[name]):
                    findings.deny(
                        REASON,
                        f"{where}: {name} requests {requests[name]} but limits {limits[name]}; GPU requests must "
                        f"equal limits: set limits {name}: {requests[name]} to keep the request, or remove "
                        f"requests {name} (it defaults to the limit)",
                    )
            elif name in limits:
                _ensure(resources, "requests")[name] = limits[name]
            elif not overcommit_allowed(name):
                findings.deny(
                    REASON,
                    f"{where}: {name} requests {requests[name]} but sets no limit; Kubernetes requires a limit "
                    f"for resources that cannot be overcommitted (\"Limit must be set for non overcommitable "
                    f"resources\"): set limits {name}: {requests[name]} (requests may then be left out)",
                )


def _section(resources: object, section: str) -> dict[str, Any]:
    if not isinstance(resources, dict):
        raise MalformedReviewError("container resources must be an object")
    values = resources.get(section)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise MalformedReviewError(f"resources.{section} must be an object")
    return values


def _ensure(resources: dict[str, Any], section: str) -> dict[str, Any]:
    if resources.get(section) is None:
        resources[section] = {}
    values: dict[str, Any] = resources[section]
    return values
