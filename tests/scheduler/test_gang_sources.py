"""Gang sizes and TTLs from PodGroup objects the scheduler reads itself (scheduler.gang.podgroups):
scheduler-plugins v1alpha1, Volcano v1beta1, Kubernetes 1.36 scheduling.k8s.io/v1alpha2, and the clean
fallback when an API is not served."""

from __future__ import annotations

from typing import Any

from scheduler.gang.podgroups import NATIVE, PLUGINS, VOLCANO, kind_name
from tests.scheduler import objects as o
from tests.scheduler.gangs import Clock, add, drain, filt, make


def podgroup(api: str, name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": api, "kind": "PodGroup", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def plugins_pod(name: str, group: str) -> dict[str, Any]:
    p = o.pod(name, gpus=8)
    p["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] = group
    return p


def reasons(r: Any) -> set[str]:
    return set(r.failed_and_unresolvable_nodes.values())


async def test_scheduler_plugins_podgroup_gives_the_minimum_and_its_timeout_is_the_plan_ttl() -> None:
    clock = Clock()
    ctx = make(clock=clock)
    gangs = ctx.gangs
    assert gangs is not None
    pods = add(ctx, *(plugins_pod(f"pg-{i}", "train") for i in range(2)))
    assert reasons(filt(ctx, pods[0])) == {
        "gang train (label scheduling.x-k8s.io/pod-group): waiting: its size is in scheduler-plugins PodGroup "
        "default/train; scheduling.x-k8s.io/v1alpha1 PodGroups are not listed yet"
    }
    gangs.podgroups_listed(
        kind_name(PLUGINS), [podgroup(PLUGINS, "train", {"minMember": 3, "scheduleTimeoutSeconds": 7})]
    )
    assert reasons(filt(ctx, pods[0])) == {"gang train: waiting for members: 2 of 3 exist"}
    pods += add(ctx, plugins_pod("pg-2", "train"))
    assert len(filt(ctx, pods[0]).node_names or []) == 1
    plan = gangs.plans[("default", "train")]
    assert (plan.min_member, plan.expires - plan.created) == (3, 7.0)
    await drain(ctx)


async def test_a_podgroup_without_timeout_gets_coscheduling_default_and_a_late_podgroup_nudges_members() -> (
    None
):
    ctx = make()
    gangs = ctx.gangs
    assert gangs is not None
    gangs.podgroups_listed(kind_name(PLUGINS), [])
    pods = add(ctx, *(plugins_pod(f"pg-{i}", "late") for i in range(2)))
    assert reasons(filt(ctx, pods[0])) == {
        "gang late (label scheduling.x-k8s.io/pod-group): waiting: its size is in scheduler-plugins PodGroup "
        "default/late, which does not exist"
    }
    binder = ctx.binder
    gangs.podgroup_event(kind_name(PLUGINS), "ADDED", podgroup(PLUGINS, "late", {"minMember": 2}))
    await drain(ctx)
    assert sorted(c[2] for c in binder.calls if c[0] == "patch") == ["pg-0", "pg-1"]  # type: ignore[attr-defined]
    assert len(filt(ctx, pods[1]).node_names or []) == 1
    plan = gangs.plans[("default", "late")]
    assert plan.expires - plan.created == 60.0  # Coscheduling's DefaultWaitTime
    await drain(ctx)


async def test_volcano_min_member_with_the_configured_ttl() -> None:
    ctx = make(plan_ttl_seconds=45)
    gangs = ctx.gangs
    assert gangs is not None
    gangs.podgroups_listed(kind_name(VOLCANO), [podgroup(VOLCANO, "vj", {"minMember": 2})])
    pods = []
    for i in range(2):
        p = o.pod(f"v-{i}", gpus=8, annotations={"scheduling.k8s.io/group-name": "vj"})
        pods.append(p)
    add(ctx, pods[0])
    assert reasons(filt(ctx, pods[0])) == {"gang vj: waiting for members: 1 of 2 exist"}
    add(ctx, pods[1])
    assert len(filt(ctx, pods[0]).node_names or []) == 1
    plan = gangs.plans[("default", "vj")]
    assert (plan.min_member, plan.expires - plan.created) == (2, 45.0)
    await drain(ctx)


def native_pod(name: str, group: str) -> dict[str, Any]:
    p = o.pod(name, gpus=8)
    p["spec"]["schedulingGroup"] = {"podGroupName": group}
    return p


async def test_native_v1alpha2_min_count_with_the_native_permit_timeout_and_basic_is_no_gang() -> None:
    ctx = make()
    gangs = ctx.gangs
    assert gangs is not None
    gangs.podgroups_listed(
        kind_name(NATIVE),
        [
            podgroup(NATIVE, "ng", {"schedulingPolicy": {"gang": {"minCount": 2}}}),
            podgroup(NATIVE, "solo", {"schedulingPolicy": {"basic": {}}}),
        ],
    )
    pods = add(ctx, native_pod("n-0", "ng"), native_pod("s-0", "solo"))
    assert reasons(filt(ctx, pods[0])) == {"gang ng: waiting for members: 1 of 2 exist"}
    assert len(filt(ctx, pods[1]).node_names or []) > 1  # basic policy: an ordinary pod
    pods += add(ctx, native_pod("n-1", "ng"))
    assert len(filt(ctx, pods[0]).node_names or []) == 1
    plan = gangs.plans[("default", "ng")]
    assert plan.expires - plan.created == 300.0
    await drain(ctx)


async def test_an_unserved_podgroup_api_is_a_readable_reason_and_the_webhook_keys_still_work() -> None:
    ctx = make(plan_ttl_seconds=30)
    gangs = ctx.gangs
    assert gangs is not None
    gangs.podgroups_unserved(kind_name(NATIVE), "404 Not Found")
    lone = add(ctx, native_pod("n-0", "ng"))[0]
    assert reasons(filt(ctx, lone)) == {
        "gang ng (spec.schedulingGroup.podGroupName): waiting: its size is in scheduling.k8s.io/v1alpha2 PodGroup "
        "default/ng, but the API server does not serve scheduling.k8s.io/v1alpha2 (404 Not Found)"
    }
    labelled = []
    for i in range(2):  # what the webhook writes: its minimum wins, the plan TTL is the configured one
        p = native_pod(f"w-{i}", "wg")
        p["metadata"]["labels"]["gpuplace.io/gang"] = "wg"
        p["metadata"]["annotations"]["gpuplace.io/gang-min-member"] = "2"
        labelled.append(p)
    add(ctx, *labelled)
    assert len(filt(ctx, labelled[0]).node_names or []) == 1
    plan = gangs.plans[("default", "wg")]
    assert plan.expires - plan.created == 30.0
    await drain(ctx)


async def test_a_webhook_labelled_member_takes_its_podgroups_timeout() -> None:
    ctx = make()
    gangs = ctx.gangs
    assert gangs is not None
    gangs.podgroups_listed(
        kind_name(PLUGINS), [podgroup(PLUGINS, "t", {"minMember": 5, "scheduleTimeoutSeconds": 9})]
    )
    pods = []
    for i in range(2):
        p = plugins_pod(f"t-{i}", "t")
        p["metadata"]["labels"]["gpuplace.io/gang"] = "t"
        p["metadata"]["annotations"]["gpuplace.io/gang-min-member"] = "2"
        pods.append(p)
    add(ctx, *pods)
    assert len(filt(ctx, pods[0]).node_names or []) == 1
    plan = gangs.plans[("default", "t")]
    assert (plan.min_member, plan.expires - plan.created) == (2, 9.0)
    await drain(ctx)


def test_podgroup_fields_that_are_not_a_size_wait_with_the_reason() -> None:
    from scheduler.gang.podgroups import parse
    from scheduler.settings import GangSettings

    s = GangSettings()
    assert parse(VOLCANO, podgroup(VOLCANO, "v", {}), s).problem == (
        "Volcano PodGroup default/v states minMember None, not a positive integer"
    )
    assert parse(PLUGINS, podgroup(PLUGINS, "p", {"minMember": True}), s).min_member is None
    assert parse(NATIVE, podgroup(NATIVE, "n", {"schedulingPolicy": {}}), s).problem == (
        "scheduling.k8s.io/v1alpha2 PodGroup default/n has no schedulingPolicy.gang"
    )
    assert (
        parse(PLUGINS, podgroup(PLUGINS, "z", {"minMember": 2, "scheduleTimeoutSeconds": 0}), s).ttl == 60.0
    )
