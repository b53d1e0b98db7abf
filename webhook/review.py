"""The AdmissionReview envelope: reading a request, writing a response.

Why hand-written and not pydantic: the engine reads five fields of the envelope and must not pay for
validating a whole pod it may not even look at (non-GPU pods take a fast path on the raw dict). What is
checked here is exactly what the answer depends on; anything else in the body is left alone.

Wire format (admission.k8s.io/v1): the response echoes `apiVersion`, `kind` and `request.uid`; a patch is
a base64-encoded JSON Patch with `patchType: JSONPatch`; a denial is `allowed: false` with a
`metav1.Status` whose message kubectl shows after "admission webhook ... denied the request:".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.errors import MalformedReviewError

API_GROUP = "admission.k8s.io"
API_VERSION = f"{API_GROUP}/v1"
KIND = "AdmissionReview"


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of `request` the engine needs."""

    uid: str
    operation: str
    namespace: str
    group: str
    resource: str
    sub_resource: str
    dry_run: bool
    object: Any

    @property
    def is_pod_create(self) -> bool:
        """A CREATE of the `pods` resource itself (not pods/binding, pods/eviction, ...)."""
        return (
            self.operation == "CREATE"
            and self.group == ""
            and self.resource == "pods"
            and not self.sub_resource
        )


@dataclass(frozen=True, slots=True)
class UnsupportedVersion:
    """An AdmissionReview of a version gpuplace does not speak; answered with a refusal, not a 400."""

    api_version: str
    uid: str


def parse_review(review: object) -> AdmissionRequest | UnsupportedVersion:
    """Validate the envelope and extract the request. Raises MalformedReviewError with a precise message."""
    if not isinstance(review, dict):
        raise MalformedReviewError(f"an AdmissionReview must be a JSON object, got {type(review).__name__}")
    kind = review.get("kind")
    if kind != KIND:
        raise MalformedReviewError(f"kind must be {KIND!r}, got {kind!r}")
    api_version = review.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        raise MalformedReviewError("apiVersion is missing")
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReviewError("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReviewError("request.uid is missing or not a string")
    if api_version != API_VERSION:
        if api_version.startswith(f"{API_GROUP}/"):
            return UnsupportedVersion(api_version=api_version, uid=uid)
        raise MalformedReviewError(f"apiVersion must be {API_VERSION!r}, got {api_version!r}")

    operation = _string(request, "operation", required=True)
    resource = request.get("resource")
    if not isinstance(resource, dict):
        raise MalformedReviewError("request.resource is missing or not an object")
    obj = request.get("object")
    if operation == "CREATE" and not isinstance(obj, dict):
        raise MalformedReviewError("request.object must be an object on CREATE")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise MalformedReviewError("request.dryRun must be a boolean")
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        namespace=_string(request, "namespace"),
        group=_string(resource, "group"),
        resource=_string(resource, "resource"),
        sub_resource=_string(request, "subResource"),
        dry_run=dry_run,
        object=obj,
    )


def _string(mapping: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = mapping.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedReviewError(f"{key} must be a {'non-empty ' if required else ''}string, got {value!r}")
    return value


def _envelope(response: dict[str, Any], api_version: str = API_VERSION) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": KIND, "response": response}


def allow(
    uid: str, *, patch: list[dict[str, Any]] | None = None, warnings: list[str] | None = None
) -> dict[str, Any]:
    """An allowing response, with a JSON Patch when `patch` is non-empty."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    if warnings:
        response["warnings"] = warnings
    return _envelope(response)


def deny(uid: str, message: str, *, code: int = 403, api_version: str = API_VERSION) -> dict[str, Any]:
    """A denying response. The message is what the user sees; say what to change."""
    status = {"code": code, "message": message}
    return _envelope({"uid": uid, "allowed": False, "status": status}, api_version)


def refuse_version(unsupported: UnsupportedVersion) -> dict[str, Any]:
    """Refuse a review of an unknown version, in that version's envelope so the caller can read it."""
    message = (
        f"gpuplace speaks {API_VERSION} only, got {unsupported.api_version}: "
        "set admissionReviewVersions: [v1] in the MutatingWebhookConfiguration"
    )
    return deny(unsupported.uid, message, code=400, api_version=unsupported.api_version)
