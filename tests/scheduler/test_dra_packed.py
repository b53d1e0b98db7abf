"""The packed DRA fit (scheduler.dra.rows: placement_core.devicefit's kernel and twin over
scheduler.dra.packed) answers exactly what scheduler.dra.fit answers node by node, on random clusters:
whole GPUs under PCIe roots, static MIG devices, partitionable MIG devices on shared counters,
shareable GPUs with consumable capacity, admin-access results, claims of several requests with
firstAvailable alternatives and selectors, and quantities that are not whole numbers — and keeps
answering it while slices and claims change under it."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from scheduler.dra.demand import DraDemand, DraRequest
from scheduler.dra.fit import fit
from scheduler.dra.rows import fit_rows
from scheduler.dra.state import DraState
from tests.scheduler import dra_payloads as rp

DRIVERS = ("gpu.nvidia.com",)
ROOTS = ("pci0000:00", "pci0000:80", "pci0000:c0", "")
PRODUCTS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
PROFILES = ("1g.10gb", "3g.40gb", "7g.80gb")
MIG_SIZES = {"1g.10gb": 1, "3g.40gb": 4, "7g.80gb": 8}
PROFILE = settings(max_examples=120, deadline=None)


def _gpu(node: str, minor: int, root: str, product: str, memory: str, shared: bool) -> dict[str, Any]:
    d = rp.gpu_device(minor, rp.uuid(node, minor), root, product=product, memory=memory)
    if not root:
        del d["attributes"]["resource.kubernetes.io/pcieRoot"]
    if shared:
        d["allowMultipleAllocations"] = True
    return d


def _partitions(node: str, minor: int, root: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A partitionable GPU: the whole device and its possible MIG devices, all consuming one counter set."""
    cs = f"gpu-{minor}-counters"
    whole = rp.gpu_device(minor, rp.uuid(node, minor), root or "pci0000:00")
    whole["consumesCounters"] = [
        {"counterSet": cs, "counters": {f"memorySlice{i}": {"value": "1"} for i in range(8)}}
    ]
    devs = [whole]
    for profile, starts in (("1g.10gb", range(7)), ("3g.40gb", (0, 4))):
        size = MIG_SIZES[profile]
        for s in starts:
            d = rp.mig_device(
                minor, rp.uuid(node, minor), profile, 9, s, size, f"MIG-{node}-{minor}-{s}-{size}"
            )
            d["consumesCounters"] = [
                {
                    "counterSet": cs,
                    "counters": {f"memorySlice{i}": {"value": "1"} for i in range(s, s + size)},
                }
            ]
            devs.append(d)
    return devs, {"name": cs, "counters": {f"memorySlice{i}": {"value": "1"} for i in range(8)}}


@st.composite
def node_slices(draw: st.DrawFn, node: str) -> list[dict[str, Any]]:
    style = draw(st.sampled_from(["whole", "whole", "static-mig", "partitionable", "partitionable", "none"]))
    n = draw(st.integers(1, 6))
    if style == "none":
        return []
    if style == "whole":
        product = draw(st.sampled_from(PRODUCTS))
        memory = draw(st.sampled_from(["80Gi", "40Gi", "81920Mi", "2.5"]))  # "2.5": not a whole number
        devs = [
            _gpu(node, i, draw(st.sampled_from(ROOTS)), product, memory, draw(st.booleans()))
            for i in range(n)
        ]
        return [rp.resource_slice(node, devs)]
    if style == "static-mig":
        devs = []
        for g in range(n):
            start = 0
            while start < 8:
                profile = draw(st.sampled_from(PROFILES))
                size = MIG_SIZES[profile]
                if start + size > 8:
                    break
                devs.append(
                    rp.mig_device(g, rp.uuid(node, g), profile, 9, start, size, f"MIG-{node}-{g}-{start}")
                )
                start += size
        return [rp.resource_slice(node, devs)]
    devs, counters = [], []
    for g in range(min(n, 3)):
        d, c = _partitions(node, g, draw(st.sampled_from(ROOTS)))
        devs += d
        counters.append(c)
    return [
        rp.resource_slice(node, devs, count=2, index=0),
        rp.resource_slice(node, [], count=2, index=1, counters=counters),
    ]


def _names(sl: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for s in sl for d in s["spec"].get("devices", [])]


@st.composite
def holders(draw: st.DrawFn, node: str, slices: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Allocated claims on `node`: exclusive devices, shares of shareable ones, admin access."""
    devs = _names(slices)
    if not devs:
        return []
    out = []
    for j in range(draw(st.integers(0, 3))):
        picked = draw(st.lists(st.sampled_from(devs), min_size=1, max_size=3, unique_by=lambda d: d["name"]))
        mode = draw(st.sampled_from(["exclusive", "share", "admin"]))
        c = rp.claim(f"h{k}-{j}", uid=f"claim-{node}-{k}-{j}")
        names = [d["name"] for d in picked]
        if mode == "share":
            amount = draw(st.sampled_from(["10Gi", "40Gi", "70Gi", "1.5"]))
            c = rp.allocated(
                c,
                node,
                names,
                consumed={"memory": amount},
                share_ids=[f"s{k}{j}{i}" for i in range(len(names))],
            )
        else:
            c = rp.allocated(c, node, names, admin=mode == "admin")
        out.append(c)
    return out


@st.composite
def requests(draw: st.DrawFn, claim: str, i: int) -> tuple[DraRequest, ...]:
    alts = []
    for j in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["gpu", "gpu", "mig", "vfio"]))
        attrs = draw(
            st.lists(
                st.one_of(
                    st.tuples(st.just("profile"), st.sampled_from(PROFILES)),
                    st.tuples(st.just("productName"), st.sampled_from([*PRODUCTS, "NVIDIA B200"])),
                    st.tuples(st.just("type"), st.sampled_from(["gpu", "mig"])),
                ),
                max_size=2,
            )
        )
        cap = draw(st.sampled_from([(), (("memory", Decimal("20") * 2**30),), (("memory", Decimal("0.5")),),
                                    (("cores", Decimal(1)),)]))  # fmt: skip
        alts.append(
            DraRequest(
                claim,
                f"r{i}/a{j}",
                kind,
                draw(st.integers(0, 4)),
                tuple(attrs),
                draw(st.booleans()),
                cap,
            )
        )
    return tuple(alts)


@st.composite
def clusters(
    draw: st.DrawFn,
) -> tuple[DraState, DraDemand, list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [f"n{i}" for i in range(draw(st.integers(1, 4)))]
    slices, claims = [], []
    for k, n in enumerate(nodes):
        sl = draw(node_slices(n))
        slices += sl
        claims += draw(holders(n, sl, k))
    dra = DraState(DRIVERS)
    dra.replace_slices(copy.deepcopy(slices))
    dra.replace_claims(copy.deepcopy(claims))
    reqs = tuple(draw(requests("default/want", i)) for i in range(draw(st.integers(0, 3))))
    on = draw(st.sampled_from(["", "", "", "", "", *nodes, "elsewhere"]))
    demand = DraDemand(reqs, (("default/want", on),) if on else ())
    names = [*draw(st.permutations(nodes)), "ghost"]
    return dra, demand, names, slices, claims


def _same_as_fit(dra: DraState, demand: DraDemand, names: list[str], *, events: bool = True) -> None:
    want = [fit(dra.devices(n), dra.usage(n), demand, n) for n in names]
    for twin in (False, True):
        got = fit_rows(dra, demand, names, twin=twin)
        assert got.ok.tolist() == [f.ok for f in want]
        assert got.reasons == [f.reason for f in want]
        assert [p for p, f in zip(got.pcie_fit.tolist(), want, strict=True) if f.ok] == [
            f.pcie_fit for f in want if f.ok
        ]
    for f in want if events else ():
        event("fits" if f.ok else f"fails: {f.reason.split(';')[0][:40]}")


@PROFILE
@given(clusters())
def test_packed_fit_equals_fit_node_by_node(case) -> None:
    dra, demand, names, _, _ = case
    _same_as_fit(dra, demand, names)


@PROFILE
@given(clusters(), st.data())
def test_packed_fit_follows_slice_and_claim_events(case, data) -> None:
    """After events, the incrementally repacked arrays answer as a state built from scratch does."""
    dra, demand, names, slices, claims = case
    fit_rows(dra, demand, names)  # packed once, then kept up to date by the events below
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["drop-claim", "drop-slice", "add-claim", "move"]))
        if what == "drop-claim" and claims:
            c = claims.pop(data.draw(st.integers(0, len(claims) - 1)))
            dra.apply_claim("DELETED", copy.deepcopy(c))
        elif what == "drop-slice" and slices:
            s = slices.pop(data.draw(st.integers(0, len(slices) - 1)))
            dra.apply_slice("DELETED", copy.deepcopy(s))
        elif what == "add-claim":
            node = data.draw(st.sampled_from([n for n in names if n != "ghost"]))
            sl = [s for s in slices if s["spec"]["nodeName"] == node]
            for c in data.draw(holders(node, sl, 90 + len(claims))):
                claims.append(c)
                dra.apply_claim("ADDED", copy.deepcopy(c))
        elif what == "move" and slices:  # a node's driver republishes its slices as a new generation
            node = data.draw(st.sampled_from([n for n in names if n != "ghost"]))
            new = data.draw(node_slices(node))
            for s in [s for s in slices if s["spec"]["nodeName"] == node]:
                slices.remove(s)
                dra.apply_slice("DELETED", copy.deepcopy(s))
            for s in new:
                s["spec"]["pool"]["generation"] = 2
                slices.append(s)
                dra.apply_slice("ADDED", copy.deepcopy(s))
        _same_as_fit(dra, demand, names)
    fresh = DraState(DRIVERS)
    fresh.replace_slices(copy.deepcopy(slices))
    fresh.replace_claims(copy.deepcopy(claims))
    a, b = fit_rows(dra, demand, names), fit_rows(fresh, demand, names)
    assert (a.ok.tolist(), a.reasons, a.pcie_fit.tolist()) == (b.ok.tolist(), b.reasons, b.pcie_fit.tolist())


def test_a_bind_repacks_one_node_not_the_table() -> None:
    """After the table is packed, a claim allocated on one node rewrites that node's usage in place."""
    dra = DraState(DRIVERS)
    dra.replace_slices([rp.a100_node_slice(n) for n in ("n1", "n2", "n3")])
    demand = DraDemand(((DraRequest("default/want", "gpu", "gpu", 6),),))
    assert fit_rows(dra, demand, ["n1", "n2", "n3"]).ok.tolist() == [True, True, True]
    packs = dra.packed().repacks
    c = rp.allocated(rp.claim("a"), "n2", ["gpu-0", "gpu-1", "gpu-2"])
    dra.apply_claim("ADDED", c)
    got = fit_rows(dra, demand, ["n1", "n2", "n3"])
    assert got.ok.tolist() == [True, False, True]
    assert got.reasons[1] == "needs 6 free GPUs (claim default/want, request gpu); 5 free here"
    assert dra.packed().repacks == packs


def test_equally_free_pcie_roots_go_to_the_first_name_as_fit_takes_them() -> None:
    """Two roots with 2 free GPUs each: fit takes the first root name's GPU for a 1-GPU one-root
    request, so a following request for 2 of that root's product finds only 1 left."""
    a100, h100 = PRODUCTS
    devs = [_gpu("n1", i, r, p, "80Gi", False) for i, (r, p) in enumerate(
        [("pci0000:00", a100), ("pci0000:00", a100), ("pci0000:80", h100), ("pci0000:80", h100)])]  # fmt: skip
    dra = DraState(DRIVERS)
    dra.replace_slices([rp.resource_slice("n1", devs)])
    one_root = DraRequest("default/want", "r1", "gpu", 1, same_pcie_root=True)
    two_a100 = DraRequest("default/want", "r2", "gpu", 2, (("productName", a100),))
    demand = DraDemand(((one_root,), (two_a100,)))
    _same_as_fit(dra, demand, ["n1"], events=False)
    assert fit_rows(dra, demand, ["n1"]).reasons == [
        "needs 2 free GPUs (claim default/want, request r2); 1 free here"
    ]
