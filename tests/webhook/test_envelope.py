"""The AdmissionReview envelope: malformed input, other versions, other operations, dryRun, fast path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.webhook.helpers import container, gpu_pod, pod, review, run
from webhook import engine
from webhook.engine import admit, evaluate
from webhook.errors import MalformedReviewError
from webhook.owners import DictOwners
from webhook.settings import WebhookSettings

SETTINGS = WebhookSettings()


def _broken(mutate: Any) -> dict[str, Any]:
    body = review(gpu_pod())
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "an AdmissionReview must be a JSON object, got list"),
        ({"kind": "Pod"}, "kind must be 'AdmissionReview', got 'Pod'"),
        (_broken(lambda b: b.pop("apiVersion")), "apiVersion is missing"),
        (_broken(lambda b: b.update(apiVersion="v1")), "apiVersion must be 'admission.k8s.io/v1', got 'v1'"),
        (_broken(lambda b: b.pop("request")), "request is missing or not an object"),
        (_broken(lambda b: b["request"].pop("uid")), "request.uid is missing or not a string"),
        (
            _broken(lambda b: b["request"].update(operation=None)),
            "operation must be a non-empty string, got None",
        ),
        (_broken(lambda b: b["request"].pop("resource")), "request.resource is missing or not an object"),
        (_broken(lambda b: b["request"].update(object="pod")), "request.object must be an object on CREATE"),
        (_broken(lambda b: b["request"].update(dryRun="yes")), "request.dryRun must be a boolean"),
        (_broken(lambda b: b["request"]["object"].update(spec=[])), "request.object.spec must be an object"),
        (
            _broken(lambda b: b["request"]["object"]["spec"].update(containers={})),
            "spec.containers must be a list",
        ),
        (
            _broken(lambda b: b["request"]["object"]["spec"]["containers"][0].update(resources=[1])),
            "container resources must be an object",
        ),
        (
            _broken(
                lambda b: b["request"]["object"]["spec"]["containers"][0]["resources"].update(limits=["x"])
            ),
            "resources.limits must be an object",
        ),
    ],
)
async def test_malformed_reviews_raise_a_specific_error(body: Any, message: str) -> None:
    with pytest.raises(MalformedReviewError) as caught:
        await admit(body, settings=SETTINGS, owners=DictOwners())
    assert str(caught.value) == message


async def test_malformed_metadata_of_a_gpu_pod_is_a_review_error() -> None:
    body = review(gpu_pod(labels={"a": 1}))
    with pytest.raises(MalformedReviewError, match=r"metadata.labels must be a map of strings"):
        await admit(body, settings=SETTINGS, owners=DictOwners())


async def test_another_admission_version_is_refused_in_its_own_envelope() -> None:
    body = review(gpu_pod(), api_version="admission.k8s.io/v1beta1")
    response = await admit(body, settings=SETTINGS, owners=DictOwners())
    assert response == {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "uid-1",
            "allowed": False,
            "status": {
                "code": 400,
                "message": "gpuplace speaks admission.k8s.io/v1 only, got admission.k8s.io/v1beta1: "
                "set admissionReviewVersions: [v1] in the MutatingWebhookConfiguration",
            },
        },
    }
    verdict = await evaluate(body, settings=SETTINGS, owners=DictOwners())
    assert (verdict.outcome, verdict.reason) == ("denied", "unsupported_version")


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
async def test_other_operations_pass_unchanged(operation: str) -> None:
    result = await run(gpu_pod(), operation=operation)
    assert result.allowed and result.patch == [] and result.outcome == "unchanged"


async def test_delete_without_object_passes() -> None:
    body = review(None, operation="DELETE")
    assert (await admit(body, settings=SETTINGS, owners=DictOwners()))["response"] == {
        "uid": "uid-1",
        "allowed": True,
    }


@pytest.mark.parametrize(
    ("resource", "sub"),
    [("pods", "binding"), ("pods", "eviction"), ("pods", "ephemeralcontainers"), ("configmaps", None)],
)
async def test_subresources_and_other_resources_pass_unchanged(resource: str, sub: str | None) -> None:
    result = await run(gpu_pod(), resource=resource, sub_resource=sub)
    assert result.allowed and result.patch == []


async def test_dry_run_gets_exactly_the_same_answer() -> None:
    p = pod(container(limits={"nvidia.com/gpu": "2"}))
    real, dry = await run(p), await run(p, dry_run=True)
    assert dry.response == real.response
    assert real.patch


async def test_the_review_is_not_modified() -> None:
    body = review(pod(container(limits={"nvidia.com/gpu": "2"})))
    before = copy.deepcopy(body)
    await admit(body, settings=SETTINGS, owners=DictOwners())
    assert body == before


@pytest.mark.parametrize(
    "p",
    [
        pod(container(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "1"})),
        pod(container(), init=[container("setup", limits={"cpu": "1"})]),
        pod({"name": "bare", "image": "x"}),
        pod(container(limits={"nvidia.com/gpu.shared": "1", "example.com/nvidia.com/gpu": "1"})),
    ],
    ids=["cpu-only", "cpu-init", "no-resources", "lookalike-names"],
)
async def test_non_gpu_pods_take_the_fast_path(p: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_copy(_: object) -> None:
        raise AssertionError("the fast path must not copy the pod")

    monkeypatch.setattr(engine, "_copy", no_copy)
    owners = DictOwners()
    result = await run(p, owners=owners)
    assert result.response["response"] == {"uid": "uid-1", "allowed": True}
    assert result.outcome == "unchanged" and not result.verdict.gpu
    assert owners.calls == []


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"nvidia.com/gpu": "1"}},
        {"requests": {"nvidia.com/mig-1g.10gb": "1"}},
        {"limits": {"nvidia.com/gpu": "0"}},
        {"limits": {"cpu": "1", "nvidia.com/mig-3g.40gb": "2"}},
    ],
)
async def test_gpu_pods_are_recognised_by_resource_name(resources: dict[str, Any]) -> None:
    result = await run(pod({"name": "c", "resources": resources}))
    assert result.verdict.gpu


async def test_gpu_in_an_init_container_makes_a_gpu_pod() -> None:
    result = await run(pod(container(), init=[container("warmup", limits={"nvidia.com/gpu": "1"})]))
    assert result.verdict.gpu
    assert result.pod["spec"]["initContainers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "1"}


async def test_extra_resource_names_are_managed() -> None:
    settings = WebhookSettings(extra_resources=("example.com/vgpu",))
    result = await run(pod(container(limits={"example.com/vgpu": "1"})), settings=settings)
    assert result.verdict.gpu and result.pod["spec"]["tolerations"]


async def test_mig_prefix_can_be_disabled() -> None:
    settings = WebhookSettings(mig_resource_prefix="")
    result = await run(pod(container(limits={"nvidia.com/mig-1g.10gb": "1"})), settings=settings)
    assert not result.verdict.gpu
