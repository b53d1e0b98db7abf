"""The admission engine: AdmissionReview dict in, AdmissionReview response dict out. No HTTP in here.

Why this shape (as kopf's `serve_admission_request`): the decision is a plain function of the review,
the settings and what the owners say, so every rule is unit-tested by calling it, the HTTP adapter only
decodes and encodes, and a benchmark can separate decision time from transport time.

Flow for a pod CREATE:
1. Envelope checks (`review.parse_review`): malformed → `MalformedReviewError` (HTTP 400); another
   admission.k8s.io version → an explicit refusal in that version's envelope.
2. Anything but a CREATE of `pods` (UPDATE, DELETE, subresources such as pods/binding): allowed unchanged.
3. Fast path: a pod naming no managed GPU resource and no resource claim is allowed, unchanged, from the
   raw dict. A pod with claims but no managed resource is a GPU pod when a claim asks for a GPU device
   class (webhook/dra.py reads the claims; undecided claims admit the pod unchanged, with a warning).
4. GPU pods: the rules run on a private copy in a fixed order (requests/limits, toleration, gang,
   routing, DRA marker); any denial refuses the pod with all messages joined; otherwise the JSON Patch between the
   original and the copy (jsonpatch.make_patch, on the parts that differ) is returned, or nothing.

Idempotence: every rule only adds what is missing, so a second invocation (reinvocationPolicy IfNeeded)
finds nothing to add and returns no patch. The one value a rule may replace is its own output: the gang
rule re-resolves from its inputs and updates `gpuplace.io/gang*` when the owner changed in between
(rules/gang.py). dryRun changes nothing: the engine has no side effects.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import jsonpatch
import orjson

from webhook.dra import gpu_claims
from webhook.owners import Owners
from webhook.resources import is_gpu_pod
from webhook.review import AdmissionRequest, UnsupportedVersion, allow, deny, parse_review, refuse_version
from webhook.rules import Findings, dra_marker, gang, requests_limits, routing, tolerations
from webhook.settings import WebhookSettings

Outcome = Literal["patched", "unchanged", "denied"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The response and how to count it: `reason` is set for denials only (a metric label); `gpu` says
    whether the pod took the full path (a GPU pod) rather than the fast path."""

    outcome: Outcome
    response: dict[str, Any]
    reason: str = ""
    gpu: bool = False


async def admit(review: object, *, settings: WebhookSettings, owners: Owners) -> dict[str, Any]:
    """Answer an AdmissionReview (admission.k8s.io/v1). Raises MalformedReviewError on malformed input."""
    return (await evaluate(review, settings=settings, owners=owners)).response


async def evaluate(review: object, *, settings: WebhookSettings, owners: Owners) -> Verdict:
    """Like `admit`, but says which outcome it was, for metrics."""
    request = parse_review(review)
    if isinstance(request, UnsupportedVersion):
        return Verdict("denied", refuse_version(request), reason="unsupported_version")
    if not request.is_pod_create:
        return Verdict("unchanged", allow(request.uid))
    pod: dict[str, Any] = request.object
    if is_gpu_pod(pod, settings):
        return await _mutate(request, settings=settings, owners=owners)
    if not settings.dra.enabled or not has_claims(pod):
        return Verdict("unchanged", allow(request.uid))
    claims = await gpu_claims(pod, namespace=_namespace(request), settings=settings, owners=owners)
    if not claims.gpu:
        return Verdict("unchanged", allow(request.uid, warnings=claims.warnings))
    return await _mutate(request, settings=settings, owners=owners, from_claims=True)


def has_claims(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec")
    return isinstance(spec, dict) and bool(spec.get("resourceClaims"))


def _namespace(request: AdmissionRequest) -> str:
    return request.namespace or str((request.object.get("metadata") or {}).get("namespace") or "default")


async def _mutate(
    request: AdmissionRequest, *, settings: WebhookSettings, owners: Owners, from_claims: bool = False
) -> Verdict:
    pod: dict[str, Any] = request.object
    mutated, findings = await mutate(
        pod, namespace=_namespace(request), settings=settings, owners=owners, from_claims=from_claims
    )
    if findings.denials:
        message = "; ".join(denial.message for denial in findings.denials)
        return Verdict("denied", deny(request.uid, message), reason=findings.denials[0].reason, gpu=True)
    patch = patch_between(pod, mutated)
    if not patch:
        return Verdict("unchanged", allow(request.uid), gpu=True)
    return Verdict("patched", allow(request.uid, patch=patch, warnings=findings.warnings), gpu=True)


async def mutate(
    pod: dict[str, Any],
    *,
    namespace: str,
    settings: WebhookSettings,
    owners: Owners,
    from_claims: bool = False,
) -> tuple[dict[str, Any], Findings]:
    """Run every rule on a copy of a GPU pod; the original is never modified. `from_claims`: its GPUs come
    from resource claims only (it names no managed resource)."""
    mutated = _copy(pod)
    findings = Findings()
    requests_limits.apply(mutated, settings=settings, findings=findings)
    tolerations.apply(mutated, settings=settings, findings=findings)
    await gang.apply(mutated, namespace=namespace, settings=settings, owners=owners, findings=findings)
    routing.apply(mutated, settings=settings, findings=findings)
    dra_marker.apply(mutated, settings=settings, findings=findings, from_claims=from_claims)
    return mutated, findings


def patch_between(original: dict[str, Any], mutated: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON Patch from `original` to `mutated`, made by jsonpatch (what make_patch calls).

    Why not plain make_patch(original, mutated): it walks every value and compares lists through
    json.dumps of each member, ~0.3 ms on an ordinary 3 KB pod (env, volumes, tolerations), which was
    90 % of the decision time. Here it runs on the parts that differ (see `_differences`) and without
    its "move" detection (optimization=False: only add / replace / remove, which is also what a reader
    of the patch expects). A property test (tests/webhook/test_idempotence.py) checks that the patch
    rebuilds `mutated` from the whole pod.
    """
    before, after = _differences(original, mutated)
    patch: list[dict[str, Any]] = jsonpatch.JsonPatch.from_diff(before, after, optimization=False).patch
    return patch


def _differences(old: Any, new: Any) -> tuple[Any, Any]:
    """Views of two JSON values with every equal part left out, keeping every path valid.

    Equal values (a C-speed `==`) are dropped from both sides. A list that did not shrink becomes a
    dict keyed by index ("0", "1", ...): JSON Pointer paths are the same for both, and without removals
    every op make_patch emits on it (a change inside an item, a replaced item, an add at index
    len = append) is also valid on the list. Anything else is passed whole. (Python's == equates 1, 1.0
    and True; rules never change a value's type, and the property test would notice if one did.)
    """
    if isinstance(old, dict) and isinstance(new, dict):
        old_view: dict[str, Any] = {}
        new_view: dict[str, Any] = {}
        for key, value in old.items():
            if key not in new:
                old_view[key] = value
            elif value != new[key]:
                old_view[key], new_view[key] = _differences(value, new[key])
        for key, value in new.items():
            if key not in old:
                new_view[key] = value
        return old_view, new_view
    if isinstance(old, list) and isinstance(new, list) and len(new) >= len(old):
        old_items: dict[str, Any] = {}
        new_items: dict[str, Any] = {}
        for index, item in enumerate(new):
            if index >= len(old):
                new_items[str(index)] = item
            elif old[index] != item:
                old_items[str(index)], new_items[str(index)] = _differences(old[index], item)
        return old_items, new_items
    return old, new


def _copy(pod: dict[str, Any]) -> dict[str, Any]:
    """A deep copy; an orjson round trip is ~10× faster than copy.deepcopy for a pod."""
    try:
        copied: dict[str, Any] = orjson.loads(orjson.dumps(pod))
    except TypeError:  # values orjson cannot encode (e.g. integers beyond 64 bits from another decoder)
        copied = copy.deepcopy(pod)
    return copied
