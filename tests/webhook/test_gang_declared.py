"""Rule 3, conventions declared on the pod: gpuplace, schedulingGroup, Kueue, Volcano, scheduler-plugins."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import GANG_LABEL, MIN_MEMBER, NS, PLUGINS_LABEL, gang, gpu_pod, obj, run
from webhook.owners import DictOwners
from webhook.rules.gang_declared import is_label_value, to_label_value

GROUP = PLUGINS_LABEL
SIZE = "gpuplace.io/gang-size"
NAME = "gpuplace.io/gang-name"


async def test_explicit_name_and_size() -> None:
    result = await run(gpu_pod(annotations={NAME: "llm", SIZE: "8"}))
    assert gang(result) == ("llm", "8")
    assert {"op": "add", "path": "/metadata/labels", "value": {GANG_LABEL: "llm"}} in result.patch
    assert {"op": "add", "path": f"/metadata/annotations/{MIN_MEMBER.replace('/', '~1')}", "value": "8"} in result.patch


async def test_explicit_name_alone_labels_without_size() -> None:
    assert gang(await run(gpu_pod(annotations={NAME: "llm"}))) == ("llm", None)


async def test_explicit_size_without_any_name_is_denied() -> None:
    result = await run(gpu_pod(annotations={SIZE: "4"}))
    assert result.message == (
        "annotation gpuplace.io/gang-size gives a gang size but no gang name: set annotation "
        "gpuplace.io/gang-name (or another tool's gang name)"
    )
    assert result.verdict.reason == "gang_conflict"


@pytest.mark.parametrize("value", ["0", "four", "-1", "", " 4", "4.0", "\u0663"])
async def test_invalid_explicit_size_is_denied(value: str) -> None:
    result = await run(gpu_pod(annotations={NAME: "llm", SIZE: value}))
    assert result.message == f"annotation gpuplace.io/gang-size={value!r} is not a positive integer"
    assert result.verdict.reason == "invalid_gang_annotation"


@pytest.mark.parametrize("value", ["", "-llm", "a" * 64, "llm/7b"])
async def test_invalid_explicit_name_is_denied(value: str) -> None:
    result = await run(gpu_pod(annotations={NAME: value}))
    assert result.message.startswith(f"gpuplace.io/gang-name={value!r} is not a valid label value")


async def test_explicit_name_beside_a_scheduler_plugins_label_is_gpuplace_s_name_and_the_label_stays() -> None:
    result = await run(gpu_pod(labels={GROUP: "theirs"}, annotations={NAME: "mine"}))
    assert result.allowed and gang(result)[0] == "mine"
    assert result.pod["metadata"]["labels"][GROUP] == "theirs"


async def test_explicit_and_kueue_sizes_must_agree() -> None:
    p = gpu_pod(
        labels={"kueue.x-k8s.io/pod-group-name": "g"},
        annotations={NAME: "g", SIZE: "4", "kueue.x-k8s.io/pod-group-total-count": "8"},
    )
    result = await run(p)
    assert result.message == (
        "contradictory sizes for gang 'g': annotation gpuplace.io/gang-size says 4, "
        "but annotation kueue.x-k8s.io/pod-group-total-count says 8; make them agree"
    )
    agreed = await run(
        gpu_pod(
            labels={"kueue.x-k8s.io/pod-group-name": "g"},
            annotations={NAME: "g", SIZE: "8", "kueue.x-k8s.io/pod-group-total-count": "8"},
        )
    )
    assert agreed.allowed and gang(agreed) == ("g", "8")


async def test_kueue_pod_group() -> None:
    p = gpu_pod(
        labels={"kueue.x-k8s.io/pod-group-name": "batch-1"},
        annotations={"kueue.x-k8s.io/pod-group-total-count": "3"},
    )
    assert gang(await run(p)) == ("batch-1", "3")


async def test_kueue_invalid_count_is_denied() -> None:
    p = gpu_pod(
        labels={"kueue.x-k8s.io/pod-group-name": "b"},
        annotations={"kueue.x-k8s.io/pod-group-total-count": "x"},
    )
    assert (
        await run(p)
    ).message == "annotation kueue.x-k8s.io/pod-group-total-count='x' is not a positive integer"


K8S_PODGROUP = "scheduling.k8s.io/v1alpha2"


async def test_scheduling_group_with_a_gang_podgroup() -> None:
    owners = DictOwners(
        [obj(K8S_PODGROUP, "PodGroup", "workers-0", {"schedulingPolicy": {"gang": {"minCount": 4}}})]
    )
    result = await run(gpu_pod(schedulingGroup={"podGroupName": "workers-0"}), owners=owners)
    assert gang(result) == ("workers-0", "4")
    assert owners.calls == [(K8S_PODGROUP, "PodGroup", NS, "workers-0")]


@pytest.mark.parametrize(
    "podgroups",
    [[], [obj(K8S_PODGROUP, "PodGroup", "w", {"schedulingPolicy": {"basic": {}}})]],
    ids=["no-podgroup", "basic-policy"],
)
async def test_scheduling_group_without_a_known_size_is_label_only(
    podgroups: list[dict[str, object]],
) -> None:
    result = await run(gpu_pod(schedulingGroup={"podGroupName": "w"}), owners=DictOwners(podgroups))
    assert gang(result) == ("w", None)


async def test_volcano_group_with_its_podgroup() -> None:
    owners = DictOwners([obj("scheduling.volcano.sh/v1beta1", "PodGroup", "vc-job", {"minMember": 2})])
    result = await run(gpu_pod(annotations={"scheduling.k8s.io/group-name": "vc-job"}), owners=owners)
    assert gang(result) == ("vc-job", "2")


async def test_existing_label_is_kept_and_sized_from_its_podgroup() -> None:
    owners = DictOwners([obj("scheduling.x-k8s.io/v1alpha1", "PodGroup", "pg", {"minMember": 3})])
    result = await run(gpu_pod(labels={GROUP: "pg"}), owners=owners)
    assert gang(result) == ("pg", "3")
    assert all(op["path"] != "/metadata/labels" for op in result.patch)


async def test_scheduler_plugins_label_comes_after_the_other_declarations_and_is_never_touched() -> None:
    p = gpu_pod(
        labels={GROUP: "theirs", "kueue.x-k8s.io/pod-group-name": "kueue-name"},
        annotations={"kueue.x-k8s.io/pod-group-total-count": "2", "scheduling.k8s.io/group-name": "vc"},
    )
    result = await run(p)
    assert gang(result) == ("kueue-name", "2")
    assert result.pod["metadata"]["labels"][GROUP] == "theirs"
    assert gang(await run(gpu_pod(labels={GROUP: "theirs"}))) == ("theirs", None)


async def test_order_explicit_then_scheduling_group_then_kueue_then_volcano() -> None:
    annotations = {"scheduling.k8s.io/group-name": "volcano"}
    labels = {"kueue.x-k8s.io/pod-group-name": "kueue"}
    assert gang(await run(gpu_pod(annotations=annotations)))[0] == "volcano"
    assert gang(await run(gpu_pod(labels=labels, annotations=annotations)))[0] == "kueue"
    with_group = gpu_pod(labels=labels, annotations=annotations, schedulingGroup={"podGroupName": "wl"})
    assert gang(await run(with_group))[0] == "wl"
    explicit = gpu_pod(
        labels=labels, annotations={**annotations, NAME: "mine"}, schedulingGroup={"podGroupName": "wl"}
    )
    assert gang(await run(explicit))[0] == "mine"


async def test_podgroups_are_not_read_when_a_size_is_stated() -> None:
    owners = DictOwners([obj("scheduling.volcano.sh/v1beta1", "PodGroup", "vc", {"minMember": 1})])
    p = gpu_pod(annotations={"scheduling.k8s.io/group-name": "vc", SIZE: "4"})
    result = await run(p, owners=owners)
    assert gang(result) == ("vc", "4") and owners.calls == []


def test_derived_names_become_valid_label_values() -> None:
    long = "a-very-long-jobset-name-that-keeps-going-and-going-and-going-x-workers"
    value = to_label_value(long)
    assert is_label_value(value) and len(value) <= 63 and value.startswith(long[:40])
    assert to_label_value(long) == value  # deterministic
    assert to_label_value("Team/Job.1") == f"Team-Job.1-{to_label_value('Team/Job.1')[-10:]}"
    assert is_label_value(to_label_value("///"))
    assert to_label_value("ok-name") == "ok-name"


async def test_invalid_foreign_names_are_made_valid() -> None:
    result = await run(gpu_pod(annotations={"scheduling.k8s.io/group-name": "x" * 80}))
    label = gang(result)[0]
    assert label is not None and is_label_value(label)


async def test_a_pod_without_metadata_gets_no_spurious_patch() -> None:
    p = gpu_pod(tolerations=[{"operator": "Exists"}])
    del p["metadata"]
    result = await run(p)
    assert (result.outcome, result.patch) == ("unchanged", [])
    named = gpu_pod(schedulingGroup={"podGroupName": "g"})
    named["metadata"] = None
    assert gang(await run(named)) == ("g", None)
