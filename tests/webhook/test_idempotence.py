"""Reinvocation: a second pass over the webhook's own output changes nothing. Also: it only ever adds."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhook.helpers import NS, Result, gpu_pod, obj, owner_ref, pod, run
from webhook.engine import mutate, patch_between
from webhook.owners import DictOwners
from webhook.settings import SchedulerRouting, WebhookSettings

ROUTED = WebhookSettings(routing=SchedulerRouting(enabled=True))
OWNERS = DictOwners(
    [
        obj("batch/v1", "Job", "train", {"parallelism": 4, "completions": 4, "completionMode": "Indexed"}),
        obj("scheduling.volcano.sh/v1beta1", "PodGroup", "vc", {"minMember": 3}),
    ]
)

resources = st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "cpu", "memory"])
quantities = st.sampled_from(["1", "2", "1000m"])


@st.composite
def containers(draw: st.DrawFn, name: str) -> dict[str, Any]:
    names = draw(st.lists(resources, max_size=3, unique=True))
    limits, requests = {}, {}
    for resource in names:
        value = draw(quantities)
        where = draw(st.sampled_from(["limits", "requests", "both"]))
        if where in ("limits", "both"):
            limits[resource] = value
        if where in ("requests", "both"):
            requests[resource] = value
    return {"name": name, "resources": {k: v for k, v in (("limits", limits), ("requests", requests)) if v}}


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    main = [draw(containers(f"c{i}")) for i in range(draw(st.integers(1, 3)))]
    init = [draw(containers(f"i{i}")) for i in range(draw(st.integers(0, 1)))]
    labels = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "scheduling.x-k8s.io/pod-group",
                    "gpuplace.io/gang",
                    "kueue.x-k8s.io/pod-group-name",
                    "batch.kubernetes.io/job-name",
                ]
            ),
            st.sampled_from(["train", "g"]),
        )
    )
    annotations = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "gpuplace.io/gang-size",
                    "gpuplace.io/gang-min-member",
                    "scheduling.k8s.io/group-name",
                    "kueue.x-k8s.io/pod-group-total-count",
                ]
            ),
            st.sampled_from(["4", "vc"]),
        )
    )
    tolerations = draw(
        st.lists(
            st.sampled_from(
                [
                    {"operator": "Exists"},
                    {"key": "nvidia.com/gpu", "operator": "Exists"},
                    {"key": "other", "operator": "Exists", "effect": "NoSchedule"},
                ]
            ),
            max_size=2,
        )
    )
    p = pod(
        *main,
        init=init or None,
        labels=labels,
        annotations=annotations,
        tolerations=tolerations,
        schedulerName=draw(st.sampled_from(["default-scheduler", "volcano"])),
    )
    if draw(st.booleans()):
        p["metadata"]["ownerReferences"] = [owner_ref("Job", "train")]
    return p


def _run(p: dict[str, Any]) -> Result:
    return asyncio.run(run(p, settings=ROUTED, owners=OWNERS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods())
def test_second_pass_is_empty_and_patches_only_add(p: dict[str, Any]) -> None:
    first = _run(p)
    own = ("/metadata/labels/gpuplace.io~1gang", "/metadata/annotations/gpuplace.io~1gang-min-member")
    for op in first.patch:
        replaces_own = op["op"] == "replace" and op["path"] in ("/spec/schedulerName", *own)
        assert op["op"] == "add" or replaces_own, op
    second = _run(first.pod)
    assert second.response["response"]["allowed"] == first.response["response"]["allowed"]
    assert second.patch == []
    if not first.allowed:
        assert first.patch == []


async def test_reinvocation_of_a_fully_mutated_gang_member_is_empty() -> None:
    p = gpu_pod(owners=[owner_ref("Job", "train")], annotations={"scheduling.k8s.io/group-name": "vc"})
    first = await run(p, settings=ROUTED, owners=OWNERS)
    assert first.outcome == "patched"
    second = await run(first.pod, settings=ROUTED, owners=OWNERS)
    assert (second.outcome, second.patch) == ("unchanged", [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods(), st.booleans(), st.booleans())
def test_the_patch_on_touched_fields_rebuilds_the_whole_mutated_pod(
    p: dict[str, Any], with_env: bool, without_metadata: bool
) -> None:
    if with_env:  # lists the rules never touch must not disturb the paths
        for c in p["spec"]["containers"]:
            c["env"] = [{"name": f"V{i}", "value": str(i)} for i in range(3)]
        p["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    if without_metadata:
        del p["metadata"]
    mutated, _ = asyncio.run(mutate(p, namespace=NS, settings=ROUTED, owners=OWNERS))
    patch = patch_between(p, mutated)
    assert jsonpatch.apply_patch(copy.deepcopy(p), patch) == mutated
    assert jsonpatch.apply_patch(copy.deepcopy(p), jsonpatch.make_patch(p, mutated).patch) == mutated
