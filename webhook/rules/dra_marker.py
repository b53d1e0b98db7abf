"""Rule 5: a pod whose GPUs come from ResourceClaims only gets gpuplace's marker resource, so kube-scheduler
calls gpuplace for it.

Why: kube-scheduler calls an extender only for pods that name one of its `managedResources` in a
container's requests or limits, or for every pod when that list is empty (pkg/scheduler/extender.go,
`HTTPExtender.IsInterested`). A pod asking for GPUs through `spec.resourceClaims` names no resource, so
without this it would be placed by kube-scheduler alone; an empty list would route every pod of the
cluster through gpuplace (scheduler/README.md, "DRA registration", has the measured cost of both).

The marker (`DraSettings.marker_resource`, default `gpuplace.io/dra-gpu`) is limit = request = 1 on the
first container, and is registered in the extender's managedResources with `ignoredByScheduler: true`:
kube-scheduler's NodeResourcesFit then skips it, and the kubelet drops extended resources no node
advertises before its own fit check (pkg/kubelet/lifecycle/predicate.go, `removeMissingExtendedResources`),
so it never makes a pod unschedulable or unadmittable. Nothing allocates it; gpuplace's extender ignores it
as a quantity. Idempotent: a pod that already names it (or any managed resource) is left alone.

Only pods that a gpuplace-extended kube-scheduler profile schedules get it (`DraSettings.marker_schedulers`,
and the routing target when routing is on; this rule runs after routing): a scheduler without gpuplace's
registration would count the marker as an extended resource no node offers, and the pod would never fit.
"""

from __future__ import annotations

from typing import Any

from webhook.resources import is_gpu_pod
from webhook.rules import Findings
from webhook.settings import WebhookSettings


def apply(pod: dict[str, Any], *, settings: WebhookSettings, findings: Findings, from_claims: bool) -> None:
    marker = settings.dra.marker_resource
    if not from_claims or not marker or is_gpu_pod(pod, settings):
        return
    if (pod["spec"].get("schedulerName") or "default-scheduler") not in _gpuplace_schedulers(settings):
        return  # another scheduler would see an extended resource no node offers
    containers = pod["spec"].get("containers")
    if not containers:
        return
    first = containers[0]
    resources = first.get("resources")
    if not isinstance(resources, dict):
        resources = first["resources"] = {}
    for section in ("limits", "requests"):
        values = resources.get(section)
        if not isinstance(values, dict):
            values = resources[section] = {}
        values[marker] = "1"


def _gpuplace_schedulers(settings: WebhookSettings) -> set[str]:
    names = set(settings.dra.marker_schedulers)
    if settings.routing.enabled:
        names.add(settings.routing.scheduler_name)
    return names
