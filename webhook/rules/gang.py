"""Rule 3: pods of a multi-pod job get gpuplace's gang name label and gang size annotation.

Why: gpuplace's scheduler places a gang all-or-nothing, which avoids the partial gangs users of other
schedulers suffer (some members running, the rest pending forever). It needs every member to say the same
two things, under gpuplace's own keys: label `gpuplace.io/gang=<name>` and annotation
`gpuplace.io/gang-min-member=<N>` (the number of GPU pods that must be placed together). Tools already
say this in five dialects; this rule translates them (`gang_declared`) and, when the pod says nothing,
asks its owner (`gang_workloads`).

Inputs and outputs never share a key. Other tools' keys (scheduling.x-k8s.io/pod-group, Kueue's, Volcano's)
and the user's `gpuplace.io/gang-name` / `gpuplace.io/gang-size` are read, never written: scheduler-plugins'
Coscheduling denies a pod whose pod-group label names no PodGroup object, so writing a derived name there
would leave every derived-gang pod Pending on a cluster running it. The outputs are never read back as a
declaration, so on reinvocation (reinvocationPolicy IfNeeded) gpuplace's earlier answer cannot contradict
the owner: the gang is resolved again from the inputs, and an output that differs is replaced.

Resolution:
- Name: the first source in the order gpuplace annotation → spec.schedulingGroup → Kueue → Volcano →
  scheduler-plugins label → owner workload.
- Size: every source that states one (gpuplace gang-size, Kueue total count, owner workload) must agree,
  else the pod is denied naming both sources and values. Only when none states a size is a referenced
  PodGroup object used (its minimum is a fallback, not a second opinion).
- A size with no name is denied (nothing to group by). A name with no size gets the label alone.
- Reads: the owner (one object; a second read of it when the pod shows the cached copy is outdated) and,
  when the pod itself states no size, the referenced PodGroups (at most three), all at once, under one
  budget (`gang_lookup_budget_seconds`). A read still running when the budget is spent counts as unknown
  and the pod is admitted with a warning: the webhook always answers inside its timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from webhook.errors import MalformedReviewError
from webhook.owners import Owners
from webhook.rules import Findings
from webhook.rules.gang_declared import CONFLICT, Claim, GangDeclarationError, declared_claims, podgroup_size
from webhook.rules.gang_workloads import workload_claim
from webhook.settings import WebhookSettings

T = TypeVar("T")


async def apply(
    pod: dict[str, Any], *, namespace: str, settings: WebhookSettings, owners: Owners, findings: Findings
) -> None:
    metadata = pod.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedReviewError("metadata must be an object")
    labels = _string_map(metadata, "labels")
    annotations = _string_map(metadata, "annotations")
    try:
        name, size = await resolve(
            pod, labels, annotations, namespace=namespace, settings=settings, owners=owners, findings=findings
        )
    except GangDeclarationError as denial:
        findings.deny(denial.reason, denial.message)
        return
    if name is None:
        return  # nothing resolved (e.g. an owner read that failed this time): earlier outputs stay
    if pod.get("metadata") is None:
        pod["metadata"] = {}
    metadata = pod["metadata"]
    if labels.get(settings.gang_label) != name:
        metadata["labels"] = {**labels, settings.gang_label: name}
    if size is not None and annotations.get(settings.gang_min_member_annotation) != str(size):
        metadata["annotations"] = {**annotations, settings.gang_min_member_annotation: str(size)}


async def resolve(
    pod: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    *,
    namespace: str,
    settings: WebhookSettings,
    owners: Owners,
    findings: Findings | None = None,
) -> tuple[str | None, int | None]:
    """(gang name, gang size) for the pod; raises GangDeclarationError when its declarations contradict."""
    claims, podgroups = declared_claims(pod, labels, annotations, settings)
    size_declared = any(claim.size is not None for claim in claims)
    workload_read = workload_claim(pod, labels, annotations, namespace=namespace, owners=owners, settings=settings)
    reads: list[Coroutine[Any, Any, Claim | None]] = []
    if workload_read is not None:
        reads.append(workload_read)
    if podgroups and not size_declared:
        reads.append(podgroup_size(podgroups, namespace=namespace, owners=owners))
    results, late = await _within(settings.gang_lookup_budget_seconds, reads)
    if late and findings is not None:
        findings.warn(
            f"gpuplace could not read the objects sizing this pod's gang within {settings.gang_lookup_budget_seconds:g} s "
            "(gang_lookup_budget_seconds); their gang size is not used for this pod"
        )
    workload = results.pop(0) if workload_read is not None else None
    from_podgroup = results.pop(0) if results else None
    if workload is not None:
        claims.append(workload)

    name = next((claim.name for claim in claims if claim.name), None)
    sized = [claim for claim in claims if claim.size is not None]
    for other in sized[1:]:
        if other.size != sized[0].size:
            raise GangDeclarationError(CONFLICT, _contradiction(name, sized[0], other))
    size = sized[0].size if sized else None
    if size is None and name is not None and from_podgroup is not None:
        size = from_podgroup.size
    if name is None and size is not None:
        raise GangDeclarationError(
            CONFLICT,
            f"{sized[0].source} gives a gang size but no gang name: set annotation "
            f"{settings.gang_name_annotation} (or another tool's gang name)",
        )
    return name, size


async def _within(budget: float, reads: list[Coroutine[Any, Any, T | None]]) -> tuple[list[T | None], bool]:
    """Run `reads` concurrently for at most `budget` seconds: their results (None for the ones cut off)
    and whether any was cut off. Cutting off never cancels a shared read (KubeOwners shields those)."""
    if not reads:
        return [], False
    if len(reads) == 1:  # the common case: no task to create (a GPU pod without a gang costs microseconds)
        try:
            async with asyncio.timeout(budget):
                return [await reads[0]], False
        except TimeoutError:
            return [None], True
    tasks = [asyncio.ensure_future(read) for read in reads]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return [task.result() if task in done else None for task in tasks], bool(pending)


def _contradiction(name: str | None, first: Claim, second: Claim) -> str:
    gang = f"gang {name!r}" if name else "this pod's gang"
    return (
        f"contradictory sizes for {gang}: {first.source} says {first.size}, "
        f"but {second.source} says {second.size}; make them agree"
    )


def _string_map(metadata: dict[str, Any] | None, key: str) -> dict[str, str]:
    value = metadata.get(key) if metadata is not None else None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedReviewError(f"metadata.{key} must be a map of strings")
    return value
