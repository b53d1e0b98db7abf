"""What kube-scheduler counts for a pod: upstream `PodRequests` with kube-scheduler v1.36's options.

A port of k8s.io/component-helpers@v0.36.3 `resource/helpers.go` — `PodRequests`,
`AggregateContainerRequests`, `determineEffectiveRequests`, `IsPodResizeInfeasible` — called as
kube-scheduler v1.36.3 calls it for the pods in its node cache (pkg/scheduler/framework/types.go,
`PodInfo.CalculateResource`): `UseStatusResources` (InPlacePodVerticalScaling, GA and locked on since 1.35),
`InPlacePodLevelResourcesVerticalScalingEnabled` (beta, on by default in 1.36), pod-level resources not
skipped (PodLevelResources, beta and on since 1.34), overhead included. For a pending pod the status
parts are empty, which gives the same numbers as NodeResourcesFit's `computePodResourceRequest`.

- containers: each one's requests; with a container status that carries `resources`, the larger of spec,
  `resources.requests` (actuated) and `allocatedResources` per resource — or only the last two while
  the pod's `PodResizePending` condition says `Infeasible`;
- restartable init containers (sidecars, `restartPolicy: Always`) are added like containers (their
  status counts the same way); a run-to-completion init container needs its requests plus the sidecars
  started before it, and the pod needs at least the largest such peak (spec only: upstream reads no
  status for them);
- pod-level `spec.resources.requests` for cpu, memory and hugepages-* replace the container sums (with
  `status.resources` set: the larger of spec, `status.resources.requests`, `status.allocatedResources`);
- `spec.overhead` is added.

One departure, on purpose: a container resource with limits but no requests counts its limits. The API
server defaults requests to limits on create, so stored pods never differ; recorded payloads and
hand-written test pods do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from placement_core.quantity import QuantityError, parse_quantity
from scheduler.wire import Container, ContainerStatus, Pod, Quantity

Resources = dict[str, Decimal]


class ResourceError(ValueError):
    """A quantity in the pod cannot be read; the message names where."""


def _parse(raw: Mapping[str, Quantity] | None, where: str) -> Resources | None:
    if raw is None:
        return None
    out = {}
    for name, value in raw.items():
        try:
            out[name] = parse_quantity(value)
        except QuantityError as e:
            raise ResourceError(f"{where}: resource {name}: {e}") from None
    return out


def _spec(c: Container) -> Resources:
    r = c.resources
    merged = {**r.limits, **r.requests}  # requests win; limits stand in where the API server would default
    return _parse(merged, f"container {c.name!r}") or {}


def _add(into: Resources, more: Resources) -> None:
    for k, v in more.items():
        into[k] = into.get(k, Decimal(0)) + v


def _max_into(into: Resources, other: Resources | None) -> None:
    for k, v in (other or {}).items():
        if k not in into or v > into[k]:
            into[k] = v


def _max(first: Resources | None, *others: Resources | None) -> Resources:
    out = dict(first or {})
    for o in others:
        _max_into(out, o)
    return out


def resize_infeasible(pod: Pod) -> bool:
    """`IsPodResizeInfeasible`: the first PodResizePending condition has reason Infeasible."""
    for cond in pod.status.conditions:
        if cond.type == "PodResizePending":
            return cond.reason == "Infeasible"
    return False


def _effective(
    spec: Resources | None, actuated: Resources | None, allocated: Resources | None, infeasible: bool
) -> Resources:
    """`determineEffectiveRequests`."""
    return _max(actuated, allocated) if infeasible else _max(spec, actuated, allocated)


def _with_status(spec: Resources, cs: ContainerStatus | None, infeasible: bool, name: str) -> Resources:
    if cs is None or cs.resources is None:
        return spec
    where = f"status of container {name!r}"
    actuated = _parse(cs.resources.requests, where)
    allocated = _parse(cs.allocated_resources, where)
    return _effective(spec, actuated, allocated, infeasible)


def pod_level_supported(name: str) -> bool:
    """`IsSupportedPodLevelResource`."""
    return name in ("cpu", "memory") or name.startswith("hugepages-")


def pod_requests(pod: Pod) -> Resources:
    """Per resource, what kube-scheduler counts for `pod` (module docstring). ResourceError if unreadable."""
    infeasible = resize_infeasible(pod)
    statuses = {cs.name: cs for cs in pod.status.container_statuses}
    statuses.update((cs.name, cs) for cs in pod.status.init_container_statuses)
    total: Resources = {}
    for c in pod.spec.containers:
        _add(total, _with_status(_spec(c), statuses.get(c.name), infeasible, c.name))
    sidecars: Resources = {}
    init_peak: Resources = {}
    for c in pod.spec.init_containers:
        reqs = _spec(c)
        if c.restart_policy == "Always":
            reqs = _with_status(reqs, statuses.get(c.name), infeasible, c.name)
            _add(total, reqs)
            _add(sidecars, reqs)
            _max_into(init_peak, sidecars)
        else:
            step = dict(reqs)
            _add(step, sidecars)
            _max_into(init_peak, step)
    _max_into(total, init_peak)
    level = pod.spec.resources
    level_reqs = _parse(level.requests, "pod-level resources") if level is not None else None
    if level_reqs and any(pod_level_supported(k) for k in level_reqs):
        effective = None
        if pod.status.resources is not None:
            effective = _effective(
                level_reqs,
                _parse(pod.status.resources.requests, "pod status resources"),
                _parse(pod.status.allocated_resources, "pod status allocatedResources"),
                infeasible,
            )
        for k, v in level_reqs.items():
            if pod_level_supported(k):
                total[k] = v if effective is None else effective.get(k, Decimal(0))
    _add(total, _parse(pod.spec.overhead, "pod overhead") or {})
    return total


_STATUS_KEYS = ("name", "resources", "allocatedResources")


def requests_fingerprint(pod: Mapping[str, Any]) -> bytes:
    """A digest of everything `pod_requests` reads, from the raw pod JSON: equal digest, equal requests.
    The cache re-reads a bound pod when this changes (an in-place resize changes spec and status) and
    skips the many status updates that change nothing here. A 16-byte digest, not the JSON itself:
    orjson's output keeps a 4 KiB allocation per pod (80 MiB for 20,000 pods)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}

    def containers(key: str) -> list[Any]:
        return [(c.get("name"), c.get("resources"), c.get("restartPolicy")) for c in spec.get(key) or []]

    def statuses(key: str) -> list[Any]:
        return [[cs.get(k) for k in _STATUS_KEYS] for cs in status.get(key) or []]

    resize = [c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "PodResizePending"]
    return hashlib.blake2b(
        orjson.dumps(
            [
                containers("containers"),
                containers("initContainers"),
                spec.get("resources"),
                spec.get("overhead"),
                statuses("containerStatuses"),
                statuses("initContainerStatuses"),
                status.get("resources"),
                status.get("allocatedResources"),
                resize[:1],
            ],
            option=orjson.OPT_SORT_KEYS,
        ),
        digest_size=16,
    ).digest()
