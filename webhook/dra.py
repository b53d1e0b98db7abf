"""Whether a pod's GPUs come from Dynamic Resource Allocation: which of its `spec.resourceClaims` ask for a GPU class.

Why the webhook must read the API for this: a pod names its claims only indirectly
(`spec.resourceClaims[].resourceClaimName` or `.resourceClaimTemplateName`); the device class is in the
ResourceClaim (`spec.devices.requests[]`) or the template (`spec.spec.devices.requests[]`), each request
naming one (`exactly.deviceClassName`) or a prioritized list of them (`firstAvailable[].deviceClassName`,
resource.k8s.io/v1 `DeviceRequest`). A request on any GPU class makes the pod a GPU pod.

GPU classes: the configured names (`DraSettings.device_classes`, NVIDIA's `gpu.nvidia.com` and
`mig.nvidia.com` by default) without a read; any other class is read once (cached) and is a GPU class
when one of its CEL selectors tests `device.driver == '<driver>'` for a configured driver (the form
NVIDIA's own DeviceClasses use, `deployments/helm/.../deviceclass-gpu.yaml`).

Reads go through `Owners` (TTL cache, concurrent reads shared, failures are None), all under one budget
(`DraSettings.lookup_budget_seconds`): claims and templates at once, then the classes they name. A read
that fails or is cut off leaves that claim *undecided*; the pod is then decided by what could be read.
Fail-safe rule: a pod with no claim known to ask for GPUs is admitted unchanged, with a warning naming
each undecided claim, rather than denied: its claims may well be a NIC's or an FPGA's, and refusing every
DRA pod while the API is slow is the failure mode users of other webhooks complain of (Volcano #3734).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from webhook.errors import MalformedReviewError
from webhook.owners import Object, Owners
from webhook.settings import WebhookSettings

RESOURCE_API = "resource.k8s.io/v1"


@dataclass(slots=True)
class ClaimsFound:
    """What the pod's claims say: the pod claim names that ask for GPUs, and warnings for undecided ones."""

    gpu: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Ref:
    pod_claim: str  # spec.resourceClaims[].name
    kind: str  # ResourceClaim | ResourceClaimTemplate
    name: str

    def describe(self, namespace: str) -> str:
        return f"claim {self.pod_claim!r} ({self.kind} {namespace}/{self.name})"


def claim_refs(pod: dict[str, Any]) -> list[_Ref]:
    """The pod's `spec.resourceClaims`, validated. Raises MalformedReviewError on a non-pod shape."""
    spec = pod.get("spec")
    claims = spec.get("resourceClaims") if isinstance(spec, dict) else None
    if claims is None:
        return []
    if not isinstance(claims, list) or not all(isinstance(claim, dict) for claim in claims):
        raise MalformedReviewError("spec.resourceClaims must be a list of objects")
    refs = []
    for claim in claims:
        pod_claim = str(claim.get("name") or "?")
        if isinstance(claim.get("resourceClaimName"), str) and claim["resourceClaimName"]:
            refs.append(_Ref(pod_claim, "ResourceClaim", claim["resourceClaimName"]))
        elif isinstance(claim.get("resourceClaimTemplateName"), str) and claim["resourceClaimTemplateName"]:
            refs.append(_Ref(pod_claim, "ResourceClaimTemplate", claim["resourceClaimTemplateName"]))
    return refs


def requested_classes(obj: Object, kind: str) -> set[str]:
    """Every deviceClassName a ResourceClaim's (or a template's) device requests name."""
    spec = obj.get("spec")
    if kind == "ResourceClaimTemplate":
        spec = spec.get("spec") if isinstance(spec, dict) else None
    devices = spec.get("devices") if isinstance(spec, dict) else None
    requests = devices.get("requests") if isinstance(devices, dict) else None
    classes: set[str] = set()
    for request in requests if isinstance(requests, list) else []:
        if not isinstance(request, dict):
            continue
        exactly = request.get("exactly")
        alternatives = request.get("firstAvailable")
        for sub in [exactly, *(alternatives if isinstance(alternatives, list) else [])]:
            name = sub.get("deviceClassName") if isinstance(sub, dict) else None
            if isinstance(name, str) and name:
                classes.add(name)
    return classes


def selects_driver(device_class: Object, drivers: tuple[str, ...]) -> bool:
    """Whether one of the DeviceClass's CEL selectors tests `device.driver == '<driver>'` for one of `drivers`."""
    spec = device_class.get("spec")
    selectors = spec.get("selectors") if isinstance(spec, dict) else None
    for selector in selectors if isinstance(selectors, list) else []:
        cel = selector.get("cel") if isinstance(selector, dict) else None
        expression = cel.get("expression") if isinstance(cel, dict) else None
        if isinstance(expression, str) and any(_driver_test(driver).search(expression) for driver in drivers):
            return True
    return False


def _driver_test(driver: str) -> re.Pattern[str]:
    return re.compile(r"device\.driver\s*==\s*(['\"])" + re.escape(driver) + r"\1")


async def gpu_claims(
    pod: dict[str, Any], *, namespace: str, settings: WebhookSettings, owners: Owners
) -> ClaimsFound:
    """Which of the pod's claims ask for GPUs (see the module docstring); never raises on an API failure."""
    found = ClaimsFound()
    refs = claim_refs(pod)
    if not refs:
        return found
    dra = settings.dra
    budget = dra.lookup_budget_seconds
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    claims = await _read_all(
        [owners.get_owner(RESOURCE_API, ref.kind, namespace, ref.name) for ref in refs],
        deadline - loop.time(),
    )
    classes_of: dict[_Ref, set[str]] = {}
    undecided: dict[_Ref, str] = {}
    for ref, (obj, late) in zip(refs, claims, strict=True):
        if obj is None:
            undecided[ref] = "not read within the budget" if late else "not found or unreadable"
        else:
            classes_of[ref] = requested_classes(obj, ref.kind)
    known_gpu = set(dra.device_classes)
    to_read = sorted({c for classes in classes_of.values() for c in classes} - known_gpu)
    read = await _read_all(
        [owners.get_owner(RESOURCE_API, "DeviceClass", "", name) for name in to_read], deadline - loop.time()
    )
    unread_classes: dict[str, str] = {}
    for name, (obj, late) in zip(to_read, read, strict=True):
        if obj is None:
            unread_classes[name] = "not read within the budget" if late else "not found or unreadable"
        elif selects_driver(obj, dra.drivers):
            known_gpu.add(name)
    for ref, classes in classes_of.items():
        if classes & known_gpu:
            found.gpu.append(ref.pod_claim)
        elif missing := sorted(classes & unread_classes.keys()):
            undecided[ref] = "DeviceClass " + ", ".join(f"{c} {unread_classes[c]}" for c in missing)
    if not found.gpu and undecided:
        found.warnings.append(
            "gpuplace could not tell whether these resource claims ask for GPUs: "
            + "; ".join(f"{ref.describe(namespace)}: {why}" for ref, why in undecided.items())
            + ". If they do, this pod got no GPU toleration, gang labels or scheduler routing from gpuplace: "
            "create the claim or template before the pod, or check gpuplace's RBAC (get resourceclaims, "
            "resourceclaimtemplates, deviceclasses)"
        )
    return found


async def _read_all(reads: list[Any], budget: float) -> list[tuple[Object | None, bool]]:
    """Run the reads concurrently for at most `budget` seconds: (object or None, whether it was cut off)."""
    if not reads:
        return []
    tasks = [asyncio.ensure_future(read) for read in reads]
    done, pending = await asyncio.wait(tasks, timeout=max(budget, 0.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [
        (task.result() if task.exception() is None else None, False) if task in done else (None, True)
        for task in tasks
    ]
