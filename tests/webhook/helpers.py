"""Builders for pods and AdmissionReviews, and a helper that applies the returned patch."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson

from webhook.engine import evaluate
from webhook.owners import DictOwners, Owners
from webhook.settings import WebhookSettings

NS = "team-a"


def container(
    name: str = "main",
    *,
    limits: dict[str, str] | None = None,
    requests: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    return {"name": name, "image": "example.com/train:1", "resources": resources}


def pod(
    *containers: dict[str, Any],
    init: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p-0", "namespace": NS}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    if owners is not None:
        metadata["ownerReferences"] = owners
    body: dict[str, Any] = {
        "containers": list(containers) or [container()],
        "schedulerName": "default-scheduler",
        **spec,
    }
    if init is not None:
        body["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def gpu_pod(count: str = "1", **kwargs: Any) -> dict[str, Any]:
    return pod(container(limits={"nvidia.com/gpu": count}, requests={"nvidia.com/gpu": count}), **kwargs)


def review(
    obj: Any,
    *,
    operation: str = "CREATE",
    uid: str = "uid-1",
    dry_run: bool = False,
    resource: str = "pods",
    sub_resource: str | None = None,
    namespace: str = NS,
    api_version: str = "admission.k8s.io/v1",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": resource},
        "operation": operation,
        "namespace": namespace,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": None,
        "dryRun": dry_run,
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def owner_ref(
    kind: str, name: str, *, api_version: str = "batch/v1", uid: str = "uid-owner"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def obj(
    api_version: str, kind: str, name: str, spec: dict[str, Any], *, uid: str = "uid-owner"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": uid},
        "spec": spec,
    }


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    body = response["response"]
    if "patch" not in body:
        return []
    assert body["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = orjson.loads(base64.b64decode(body["patch"]))
    return patch


class Result:
    """An engine answer, plus the pod as the apiserver would store it after applying the patch."""

    def __init__(self, original: dict[str, Any], verdict: Any) -> None:
        self.verdict = verdict
        self.response = verdict.response
        self.outcome: str = verdict.outcome
        self.patch = decode_patch(self.response)
        self.pod: dict[str, Any] = (
            jsonpatch.apply_patch(copy.deepcopy(original), self.patch) if self.patch else original
        )

    @property
    def allowed(self) -> bool:
        return bool(self.response["response"]["allowed"])

    @property
    def message(self) -> str:
        return str(self.response["response"]["status"]["message"])

    @property
    def warnings(self) -> list[str]:
        return list(self.response["response"].get("warnings", []))


async def run(
    p: dict[str, Any],
    *,
    settings: WebhookSettings | None = None,
    owners: Owners | None = None,
    **review_kwargs: Any,
) -> Result:
    """Admit pod `p` and return the result; checks the response envelope on the way."""
    verdict = await evaluate(
        review(p, **review_kwargs),
        settings=settings or WebhookSettings(),
        owners=owners if owners is not None else DictOwners(),
    )
    response = verdict.response
    assert response["apiVersion"] == "admission.k8s.io/v1"
    assert response["kind"] == "AdmissionReview"
    assert response["response"]["uid"] == review_kwargs.get("uid", "uid-1")
    return Result(p, verdict)


GANG_LABEL = "gpuplace.io/gang"  # what gpuplace writes: the gang name it resolved
MIN_MEMBER = "gpuplace.io/gang-min-member"  # what gpuplace writes: the gang size it resolved
PLUGINS_LABEL = "scheduling.x-k8s.io/pod-group"  # scheduler-plugins' key: read, never written


def gang(result: Result) -> tuple[str | None, str | None]:
    """(gang name, gang size) as gpuplace wrote them on the admitted pod."""
    meta = result.pod.get("metadata") or {}
    return (meta.get("labels") or {}).get(GANG_LABEL), (meta.get("annotations") or {}).get(MIN_MEMBER)
