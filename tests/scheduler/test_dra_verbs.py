"""filter, prioritize and bind for pods whose GPUs come from ResourceClaims (scheduler.dra.extender)."""

from __future__ import annotations

from typing import Any

import orjson

from scheduler.context import ExtenderContext
from scheduler.verbs.bind import bind
from scheduler.verbs.filter import filter_nodes
from scheduler.verbs.prioritize import prioritize
from scheduler.wire import ExtenderArgs, ExtenderBindingArgs
from tests.scheduler import dra_payloads as rp
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of, make_ctx

ROOTS = ("pci0000:00",) * 4 + ("pci0000:80",) * 4


def cluster(claims: list[dict[str, Any]], pods: list[dict[str, Any]], slices: list[dict[str, Any]] | None = None,
            names: tuple[str, ...] = ("n1", "n2")) -> ExtenderContext:  # fmt: skip
    ctx = make_ctx([o.node(n, product="", gpus=0) for n in names], pods)
    ctx.cache.replace_slices(slices if slices is not None else [rp.a100_node_slice(n) for n in names])
    ctx.cache.replace_claims(claims)
    return ctx


def holder(name: str, node: str, devices: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A running pod and its allocated claim holding `devices` on `node`."""
    c = rp.allocated(rp.claim(name, count=len(devices)), node, devices)
    return c, rp.pod_with_claim(name, c["metadata"]["name"], node=node)


def args(pod: dict[str, Any], names: tuple[str, ...] = ("n1", "n2")) -> ExtenderArgs:
    return ExtenderArgs.model_validate(o.extender_args(pod, names=list(names)))


def test_filter_says_why_no_pcie_root_has_room() -> None:
    c1, p1 = holder("busy1", "n1", ["gpu-0", "gpu-1", "gpu-2", "gpu-4", "gpu-5", "gpu-6"])
    want = rp.claim("train", count=2, pcie_constraint=True)
    pod = rp.pod_with_claim("train", want["metadata"]["name"])
    ctx = cluster([c1, want], [p1, pod])
    out = filter_nodes(args(pod), ctx).to_wire()
    assert out.node_names == ["n2"] and out.error == ""
    assert out.failed_nodes == {
        "n1": "gpuplace (DRA): needs 2 free GPUs under one PCIe root (claim default/train-gpu-x7k2p, "
        "request gpu); free here: 1 on pci0000:00, 1 on pci0000:80"
    }


def test_prioritize_prefers_the_tightest_free_pcie_root() -> None:
    """n1 and n2 have 4 free GPUs each: n1 two under each root, n2 four under one. A 2-GPU claim that
    needs one root fits n1's roots exactly and keeps n2's whole root for a 4-GPU claim."""
    c1, p1 = holder("a", "n1", ["gpu-0", "gpu-1", "gpu-4", "gpu-5"])
    c2, p2 = holder("b", "n2", ["gpu-4", "gpu-5", "gpu-6", "gpu-7"])
    want = rp.claim("train", count=2, pcie_constraint=True)
    pod = rp.pod_with_claim("train", want["metadata"]["name"])
    ctx = cluster([c1, c2, want], [p1, p2, pod])
    scores = {h.host: h.score for h in prioritize(args(pod), ctx).to_wire()}
    assert scores["n1"] == 10 and scores["n2"] < scores["n1"]


def test_first_available_falls_back_to_the_next_subrequest() -> None:
    c1, p1 = holder("busy", "n1", [f"gpu-{i}" for i in range(7)])
    want = rp.claim("flex", first_available=[
        {"name": "two", "deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 2},
        {"name": "one", "deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 1},
    ])  # fmt: skip
    pod = rp.pod_with_claim("flex", want["metadata"]["name"])
    ctx = cluster([c1, want], [p1, pod], names=("n1",))
    assert filter_nodes(args(pod, ("n1",)), ctx).to_wire().node_names == ["n1"]


def test_mig_profile_selector() -> None:
    parent = rp.uuid("m1", 0)
    devs = [rp.mig_device(0, parent, "3g.40gb", 9, s, 4, f"MIG-{s}") for s in (0, 4)]
    slices = [rp.resource_slice("m1", devs), rp.a100_node_slice("n1")]
    held = rp.allocated(rp.claim("x", device_class="mig.nvidia.com"), "m1", ["gpu-0-mig-3g.40gb-9-0"])
    px = rp.pod_with_claim("x", held["metadata"]["name"], node="m1")
    sel = 'device.attributes["gpu.nvidia.com"].profile == "3g.40gb"'
    want = rp.claim("y", device_class="mig.nvidia.com", selectors=(sel,))
    pod = rp.pod_with_claim("y", want["metadata"]["name"])
    ctx = cluster([held, want], [px, pod], slices=slices, names=("m1", "n1"))
    out = filter_nodes(args(pod, ("m1", "n1")), ctx).to_wire()
    assert out.node_names == ["m1"]
    assert "needs 1 free MIG 3g.40gb device" in out.failed_nodes["n1"]
    held2 = rp.allocated(
        rp.claim("z", device_class="mig.nvidia.com"), "m1", ["gpu-0-mig-3g.40gb-9-4"], pod="x"
    )
    held2["metadata"]["uid"] = "claim-uid-z2"
    held2["metadata"]["name"] = "z2"
    ctx.cache.apply_claim("ADDED", held2)
    assert filter_nodes(args(pod, ("m1",)), ctx).to_wire().node_names == []


def test_a_selector_gpuplace_cannot_read_leaves_feasibility_to_kube_scheduler() -> None:
    c1, p1 = holder("busy", "n1", [f"gpu-{i}" for i in range(8)])
    want = rp.claim(
        "odd", selectors=("device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0",)
    )
    pod = rp.pod_with_claim("odd", want["metadata"]["name"])
    ctx = cluster([c1, want], [p1, pod])
    assert filter_nodes(args(pod), ctx).to_wire().node_names == ["n1", "n2"]


def bind_args(pod: dict[str, Any], node: str) -> ExtenderBindingArgs:
    m = pod["metadata"]
    return ExtenderBindingArgs.model_validate({"PodName": m["name"], "PodNamespace": m["namespace"],
                                               "PodUID": m["uid"], "Node": node})  # fmt: skip


async def test_bind_confirms_the_allocation_prebind_wrote() -> None:
    want = rp.claim("train", count=2, pcie_constraint=True)
    pod = rp.pod_with_claim("train", want["metadata"]["name"])
    ctx = cluster([want], [])
    b = binder_of(ctx)
    b.add(pod)
    key = ("default", want["metadata"]["name"])
    b.claims[key] = want
    filter_nodes(args(pod), ctx)
    r = await bind(bind_args(pod, "n2"), ctx)
    assert (
        "is not allocated (kube-scheduler's DynamicResources plugin writes status.allocation in PreBind"
        in r.error
    )
    b.claims[key] = rp.allocated(want, "n1", ["gpu-4", "gpu-5"])
    r = await bind(bind_args(pod, "n2"), ctx)
    assert "ResourceClaim default/train-gpu-x7k2p is allocated on node n1, not n2" in r.error
    assert [c[0] for c in b.calls if c[0] == "bind"] == []
    r = await bind(bind_args(pod, "n1"), ctx)
    assert r.error == ""
    stored = b.pods[("default", "train")]
    rec = orjson.loads(stored["metadata"]["annotations"]["gpuplace.io/gpus"])
    assert stored["spec"]["nodeName"] == "n1" and rec["gpus"] == [4, 5]
    assert rec["uuids"] == [rp.uuid("n1", 4), rp.uuid("n1", 5)]
    s = ctx.cache.state
    row = s.index["n1"]
    assert [g for g in range(8) if s.gpu_free_milli[row, g] < 1000] == [4, 5]  # counted once, by the claim
    assert ctx.cache.dra is not None and ctx.cache.dra.problems() == [] and s.check_invariants() == []


async def test_bind_counts_the_claim_of_a_pod_the_watch_has_not_shown_yet() -> None:
    """The pod list is complete, the pod arrived after it (no event yet): the claim PreBind allocated
    for it must hold its devices at once, not read as reserved for a pod that is gone."""
    want = rp.claim("late", count=2)
    pod = rp.pod_with_claim("late", want["metadata"]["name"])
    ctx = cluster([], [])
    b = binder_of(ctx)
    b.on_change = None  # the watch lags
    b.add(pod)
    b.claims[("default", want["metadata"]["name"])] = rp.allocated(want, "n2", ["gpu-6", "gpu-7"])
    assert (await bind(bind_args(pod, "n2"), ctx)).error == ""
    s = ctx.cache.state
    assert [g for g in range(8) if s.gpu_free_milli[s.index["n2"], g] < 1000] == [6, 7]
