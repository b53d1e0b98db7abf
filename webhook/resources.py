"""Which pods are GPU pods, decided from the raw pod dict.

Why raw dicts: most pods in a cluster request no GPU. With the recommended MutatingWebhookConfiguration
they never reach gpuplace (matchConditions filter them in the apiserver), but any that do (an older
configuration, a direct call) must cost microseconds: no models, no copies, a few dict lookups.

A pod is a GPU pod when any container or init container names a managed resource in `resources.limits`
or `resources.requests`, whatever the quantity (even "0"). Key presence is the same test
kube-scheduler applies to an extender's managedResources and the manifest's CEL applies, so the three
always agree on which pods are gpuplace's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.errors import MalformedReviewError
from webhook.settings import WebhookSettings

CONTAINER_LISTS = ("initContainers", "containers")


def is_gpu_pod(pod: dict[str, Any], settings: WebhookSettings) -> bool:
    """Whether the pod names a managed GPU resource anywhere. Raises MalformedReviewError on a non-pod shape."""
    for _, container in iter_containers(pod):
        resources = container.get("resources")
        if not resources:
            continue
        if not isinstance(resources, dict):
            raise MalformedReviewError("container resources must be an object")
        for section in ("limits", "requests"):
            values = resources.get(section)
            if values and any(settings.is_managed(name) for name in _keys(values, section)):
                return True
    return False


def iter_containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (list name, container) for init containers then containers, validating the shape."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise MalformedReviewError("request.object.spec must be an object")
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise MalformedReviewError(f"spec.{list_name} must be a list")
        for container in containers:
            if not isinstance(container, dict):
                raise MalformedReviewError(f"spec.{list_name} entries must be objects")
            yield list_name, container


def _keys(values: object, section: str) -> Any:
    if not isinstance(values, dict):
        raise MalformedReviewError(f"resources.{section} must be an object")
    return values.keys()
