"""GPUs through Dynamic Resource Allocation: pods whose claims ask for a GPU DeviceClass, and pods asking for a
DRA-backed extended resource, are GPU pods (toleration, marker, gang keys, routing); other claim pods are not."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.webhook.fakeapi import FakeApiserver
from tests.webhook.helpers import NS, container, pod, run
from webhook.dra import gpu_claims
from webhook.owners import DictOwners, KubeOwners
from webhook.settings import DraSettings, SchedulerRouting, WebhookSettings

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
MARKER = "gpuplace.io/dra-gpu"
API = "resource.k8s.io/v1"


def claim_template(name: str, *classes: str, first_available: bool = False) -> dict[str, Any]:
    """A ResourceClaimTemplate whose one request asks for `classes` (exactly, or as firstAvailable)."""
    if first_available:
        request: dict[str, Any] = {
            "name": "gpu",
            "firstAvailable": [{"name": f"alt{i}", "deviceClassName": c} for i, c in enumerate(classes)],
        }
    else:
        request = {"name": "gpu", "exactly": {"deviceClassName": classes[0], "count": 1}}
    return {
        "apiVersion": API,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"spec": {"devices": {"requests": [request]}}},
    }


def resource_claim(name: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": device_class}}]}},
    }


def device_class(name: str, expression: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def claim_pod(*claims: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    main = container(limits={"cpu": "2"})
    main["resources"]["claims"] = [{"name": c["name"]} for c in claims]
    return pod(main, resourceClaims=list(claims), **kwargs)


def from_template(template: str, name: str = "gpu") -> dict[str, str]:
    return {"name": name, "resourceClaimTemplateName": template}


OWNERS = DictOwners(
    [
        claim_template("one-gpu", "gpu.nvidia.com"),
        claim_template("one-mig", "mig.nvidia.com"),
        claim_template("nic", "rdma.example.com"),
        claim_template("custom", "h100-only"),
        claim_template("fallback", "rdma.example.com", "mig.nvidia.com", first_available=True),
        resource_claim("shared-gpu", "gpu.nvidia.com"),
        device_class("rdma.example.com", "device.driver == 'rdma.example.com'"),
        device_class(
            "h100-only",
            "device.driver == \"gpu.nvidia.com\" && device.attributes['gpu.nvidia.com'].productName.startsWith('NVIDIA H100')",
        ),
    ]
)


@pytest.mark.parametrize("template", ["one-gpu", "one-mig", "custom", "fallback"])
async def test_a_claim_on_a_gpu_class_makes_a_gpu_pod(template: str) -> None:
    result = await run(claim_pod(from_template(template)), owners=OWNERS)
    assert result.outcome == "patched"
    spec = result.pod["spec"]
    assert spec["tolerations"] == [GPU_TOLERATION]
    first = spec["containers"][0]["resources"]
    assert first["limits"][MARKER] == "1" and first["requests"][MARKER] == "1"
    assert first["limits"]["cpu"] == "2"


async def test_a_shared_resource_claim_counts_like_a_template() -> None:
    p = claim_pod({"name": "gpu", "resourceClaimName": "shared-gpu"})
    result = await run(p, owners=OWNERS)
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]


async def test_claims_of_other_drivers_leave_the_pod_alone() -> None:
    result = await run(claim_pod(from_template("nic")), owners=OWNERS)
    assert result.outcome == "unchanged" and not result.patch
    assert "warnings" not in result.response["response"]


async def test_gpu_and_other_claims_together_make_a_gpu_pod() -> None:
    p = claim_pod(from_template("nic", "net"), from_template("one-gpu"))
    result = await run(p, owners=OWNERS)
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]


async def test_a_second_pass_changes_nothing() -> None:
    first = await run(claim_pod(from_template("one-gpu")), owners=OWNERS)
    second = await run(first.pod, owners=OWNERS)
    assert second.outcome == "unchanged" and not second.patch


async def test_claim_pods_get_gang_keys_and_routing() -> None:
    routed = WebhookSettings(routing=SchedulerRouting(enabled=True))
    p = claim_pod(
        from_template("one-gpu"), annotations={"gpuplace.io/gang-name": "train", "gpuplace.io/gang-size": "4"}
    )
    result = await run(p, owners=OWNERS, settings=routed)
    metadata = result.pod["metadata"]
    assert metadata["labels"]["gpuplace.io/gang"] == "train"
    assert metadata["annotations"]["gpuplace.io/gang-min-member"] == "4"
    assert result.pod["spec"]["schedulerName"] == "gpuplace-scheduler"


async def test_an_unreadable_claim_admits_the_pod_unchanged_with_a_warning() -> None:
    result = await run(claim_pod(from_template("not-created-yet")), owners=OWNERS)
    assert result.allowed and result.outcome == "unchanged" and not result.patch
    [warning] = result.response["response"]["warnings"]
    assert "claim 'gpu' (ResourceClaimTemplate team-a/not-created-yet): not found or unreadable" in warning
    assert "no GPU toleration" in warning


async def test_an_unreadable_device_class_is_named_in_the_warning() -> None:
    owners = DictOwners([claim_template("odd", "missing-class")])
    result = await run(claim_pod(from_template("odd")), owners=owners)
    [warning] = result.response["response"]["warnings"]
    assert "DeviceClass missing-class not found or unreadable" in warning


async def test_configured_classes_need_no_read_and_unknown_classes_are_read_once() -> None:
    owners = DictOwners(OWNERS._objects.values())
    await run(claim_pod(from_template("one-gpu")), owners=owners)
    assert ("resource.k8s.io/v1", "DeviceClass", "", "gpu.nvidia.com") not in owners.calls
    await run(claim_pod(from_template("custom")), owners=owners)
    assert ("resource.k8s.io/v1", "DeviceClass", "", "h100-only") in owners.calls


@pytest.mark.parametrize(
    "resource",
    [
        "deviceclass.resource.kubernetes.io/gpu.nvidia.com",
        "deviceclass.resource.kubernetes.io/mig.nvidia.com",
    ],
)
async def test_the_implicit_extended_resource_of_a_gpu_class_is_a_gpu_resource(resource: str) -> None:
    result = await run(pod(container(limits={resource: "1"})))
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert result.pod["spec"]["containers"][0]["resources"]["requests"] == {resource: "1"}
    assert MARKER not in result.pod["spec"]["containers"][0]["resources"]["limits"]


async def test_a_dra_backed_gpu_request_gets_no_marker() -> None:
    """`nvidia.com/gpu: 1` served by DRA (DeviceClass extendedResourceName) already reaches the extender."""
    p = claim_pod(from_template("one-gpu"))
    p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    result = await run(p, owners=OWNERS)
    assert MARKER not in result.pod["spec"]["containers"][0]["resources"]["limits"]
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]


async def test_dra_off_or_no_marker() -> None:
    off = WebhookSettings(dra=DraSettings(enabled=False))
    assert (
        await run(claim_pod(from_template("one-gpu")), owners=OWNERS, settings=off)
    ).outcome == "unchanged"
    no_marker = WebhookSettings(dra=DraSettings(marker_resource=None))
    result = await run(claim_pod(from_template("one-gpu")), owners=OWNERS, settings=no_marker)
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert MARKER not in result.pod["spec"]["containers"][0]["resources"]["limits"]


async def test_malformed_claims_are_a_400() -> None:
    from webhook.errors import MalformedReviewError

    with pytest.raises(MalformedReviewError, match=r"spec\.resourceClaims"):
        await run(pod(container(limits={"cpu": "1"}), resourceClaims="gpu"), owners=OWNERS)


async def test_the_budget_bounds_slow_reads(apiserver: tuple[FakeApiserver, Configuration]) -> None:
    fake, configuration = apiserver
    fake.delay = 5.0
    settings = WebhookSettings(dra=DraSettings(lookup_budget_seconds=0.05))
    async with ApiClient(configuration) as api:
        owners = KubeOwners(api_client=api, timeout_seconds=10)
        found = await gpu_claims(
            claim_pod(from_template("slow")), namespace=NS, settings=settings, owners=owners
        )
    assert found.gpu == []
    assert "not read within the budget" in found.warnings[0]


async def test_kube_owners_reads_templates_and_cluster_scoped_classes(
    apiserver: tuple[FakeApiserver, Configuration],
) -> None:
    fake, configuration = apiserver
    fake.objects[f"/apis/resource.k8s.io/v1/namespaces/{NS}/resourceclaimtemplates/custom"] = claim_template(
        "custom", "h100-only"
    )
    fake.objects["/apis/resource.k8s.io/v1/deviceclasses/h100-only"] = device_class(
        "h100-only", "device.driver == 'gpu.nvidia.com'"
    )
    async with ApiClient(configuration) as api:
        owners = KubeOwners(api_client=api)
        found = await gpu_claims(
            claim_pod(from_template("custom")), namespace=NS, settings=WebhookSettings(), owners=owners
        )
    assert found.gpu == ["gpu"]
    assert "/apis/resource.k8s.io/v1/deviceclasses/h100-only" in fake.paths


def test_the_marker_is_the_one_deploy_registers() -> None:
    """deploy/scheduler, deploy/second-scheduler and the chart register this name (tests/scheduler/test_deploy.py)."""
    from gpuplace.localcluster.scheduler_entry import DRA_MARKER_RESOURCE

    assert DraSettings().marker_resource == DRA_MARKER_RESOURCE == MARKER


async def test_pods_of_other_schedulers_get_no_marker() -> None:
    """A scheduler without gpuplace's registration would find no node offering the marker."""
    result = await run(claim_pod(from_template("one-gpu"), schedulerName="volcano"), owners=OWNERS)
    assert result.pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert MARKER not in result.pod["spec"]["containers"][0]["resources"]["limits"]


async def test_routed_pods_get_the_marker_for_the_routed_scheduler() -> None:
    routed = WebhookSettings(routing=SchedulerRouting(enabled=True))
    result = await run(claim_pod(from_template("one-gpu")), owners=OWNERS, settings=routed)
    assert result.pod["spec"]["schedulerName"] == "gpuplace-scheduler"
    assert result.pod["spec"]["containers"][0]["resources"]["limits"][MARKER] == "1"


def test_owner_templates_with_claims_count_as_gpu_members() -> None:
    """Gang sizes from owners (JobSet, PyTorchJob, LWS) count member templates whose GPUs come from claims."""
    from webhook.rules.gang_shapes import requests_managed

    template = {"containers": [container(limits={"cpu": "1"})], "resourceClaims": [from_template("one-gpu")]}
    assert requests_managed(template, WebhookSettings())
    assert not requests_managed(template, WebhookSettings(dra=DraSettings(enabled=False)))
    assert not requests_managed({"containers": [container(limits={"cpu": "1"})]}, WebhookSettings())
