"""Rule 2: GPU requests equal GPU limits, or the pod is denied with a message that says where.

Why: extended resources cannot be overcommitted, and the apiserver rejects a pod whose GPU requests and
limits differ, or that requests GPUs without a limit, with a generic validation error that names neither
container nor fix. This rule fills in the missing half (only limits → requests = limits; only
requests → limits = requests) and denies real conflicts naming the container, the resource and both
values, before validation runs. It never changes a value the user wrote: it only adds the missing one,
copied verbatim. Values are compared as quantities ("1" equals "1000m").
"""

from __future__ import annotations

from typing import Any

from placement_core.quantity import same_quantity
from webhook.errors import MalformedReviewError
from webhook.resources import iter_containers
from webhook.rules import Findings, container_label
from webhook.settings import WebhookSettings

REASON = "requests_limits_conflict"


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
                        f"{where}: {name} requests {requests[name]} but limits {limits[name]}; "
                        "GPU requests must equal limits (set both to the same value, or only one of them)",
                    )
            elif name in limits:
                _ensure(resources, "requests")[name] = limits[name]
            else:
                _ensure(resources, "limits")[name] = requests[name]
                findings.warn(f"gpuplace set {where} limits {name}={requests[name]} to match its requests")


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
