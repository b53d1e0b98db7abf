"""The extender over a real socket, with payloads shaped exactly as kube-scheduler sends them."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from scheduler.context import ExtenderContext
from scheduler.http import make_extender_app
from scheduler.service import attach_background
from tests.scheduler import objects as o
from tests.scheduler.conftest import binder_of

ALL = ["h0", "h1", "v0", "a0", "c0"]
Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def client(aiohttp_client: Any, cluster: ExtenderContext) -> Client:
    cluster.settings = cluster.settings.model_copy(update={"max_body_bytes": 1 << 20})
    app = make_extender_app(cluster)
    attach_background(app, None)
    return await aiohttp_client(app)


def body(obj: Any) -> bytes:
    return orjson.dumps(obj)  # Go's encoding: no spaces, fields in declaration order


async def post(client: Client, verb: str, payload: bytes) -> tuple[int, Any]:
    resp = await client.post(
        f"/scheduler/{verb}", data=io.BytesIO(payload), headers={"Content-Type": "application/json"}
    )
    text = await resp.read()
    try:
        return resp.status, orjson.loads(text)
    except orjson.JSONDecodeError:
        return resp.status, text.decode()


async def test_filter_prioritize_bind_in_node_names_mode(client: Client, cluster: ExtenderContext) -> None:
    p = binder_of(cluster).add(o.pod("train", gpus=4, annotations={"gpuplace.io/nvlink": "required"}))
    for _ in range(2):  # the second call takes the byte-cache path
        status, r = await post(client, "filter", body(o.extender_args(p, names=ALL)))
        assert status == 200
        assert r == {
            "Nodes": None,
            "NodeNames": ["h1", "v0", "a0"],
            "FailedNodes": {"h0": "needs 4 free GPUs; 2 free here"},  # too few GPUs at all, before NVLink
            "FailedAndUnresolvableNodes": {"c0": "node has no GPUs"},
            "Error": "",
        }
        status, prio = await post(client, "prioritize", body(o.extender_args(p, names=r["NodeNames"])))
        assert status == 200 and [h["Host"] for h in prio] == r["NodeNames"]
        assert all(set(h) == {"Host", "Score"} and 0 <= h["Score"] <= 10 for h in prio)
    assert cluster.names.hits >= 2
    best = max(prio, key=lambda h: h["Score"])["Host"]
    m = p["metadata"]
    status, r = await post(
        client,
        "bind",
        body({"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": best}),
    )
    assert (status, r) == (200, {"Error": ""})
    assert binder_of(cluster).pods[("default", "train")]["spec"]["nodeName"] == best


async def test_full_nodes_mode(client: Client) -> None:
    nodes = [o.node("h1"), o.node("x", product="NVIDIA-L4", gpus=1)]
    status, r = await post(client, "filter", body(o.extender_args(o.pod("p", gpus=2), nodes=nodes)))
    assert status == 200 and r["NodeNames"] is None
    assert [n["metadata"]["name"] for n in r["Nodes"]["items"]] == ["h1"]
    assert r["FailedAndUnresolvableNodes"] == {"x": "needs 2 GPUs; node has 1 suitable GPUs in total"}
    status, prio = await post(client, "prioritize", body(o.extender_args(o.pod("p", gpus=2), nodes=nodes)))
    assert status == 200 and {h["Host"] for h in prio} == {"h1", "x"}


async def test_preempt_meta_victims(client: Client, cluster: ExtenderContext) -> None:
    busy = next(u for u, r in cluster.cache.pods.items() if r.name == "busy")
    payload = {
        "Pod": o.pod("p", gpus=8),
        "NodeNameToVictims": None,
        "NodeNameToMetaVictims": {
            "h0": {"Pods": [{"UID": busy}], "NumPDBViolations": 0},
            "c0": {"Pods": [], "NumPDBViolations": 0},
        },
    }
    status, r = await post(client, "preempt", body(payload))
    assert (status, r) == (
        200,
        {"NodeNameToMetaVictims": {"h0": {"Pods": [{"UID": busy}], "NumPDBViolations": 0}}},
    )


@pytest.mark.parametrize(
    ("verb", "payload", "message"),
    [
        ("filter", b"{not json", "malformed JSON"),
        ("filter", b"[]", "must be a JSON object"),
        ("filter", b'{"NodeNames": ["a"]}', "Pod"),
        ("filter", b'{"Pod": {}, "NodeNames": "h0"}', "NodeNames"),
        ("prioritize", b'{"Pod": {"spec": {"containers": 3}}, "NodeNames": []}', "containers"),
        ("bind", b'{"PodName": "p"}', "PodUID"),
        ("bind", b'{"PodName": 1, "PodNamespace": "d", "PodUID": "u", "Node": "n"}', "PodName"),
        ("preempt", b'{"Pod": {}, "NodeNameToMetaVictims": {"n": {"Pods": [{"UID": 5}]}}}', "UID"),
    ],
)
async def test_malformed_requests_are_400_and_the_server_keeps_serving(
    client: Client, verb: str, payload: bytes, message: str
) -> None:
    status, text = await post(client, verb, payload)
    assert status == 400 and message in text
    assert (await client.get("/healthz")).status == 200


async def test_unknown_fields_are_tolerated(client: Client) -> None:
    p = o.pod("p", gpus=1)
    p["spec"]["resourceClaims"] = [{"name": "x"}]
    p["metadata"]["newThing"] = {"a": [1, 2]}
    payload = o.extender_args(p, names=["h1"]) | {"FutureField": True}
    status, r = await post(client, "filter", body(payload))
    assert status == 200 and r["NodeNames"] == ["h1"]


async def test_huge_body_is_413(client: Client) -> None:
    status, _ = await post(client, "filter", b'{"Pod": {}, "NodeNames": ["' + b"x" * (2 << 20) + b'"]}')
    assert status == 413


async def test_internal_errors_do_not_crash(
    client: Client, cluster: ExtenderContext, monkeypatch: Any
) -> None:
    def boom(*a: Any) -> Any:
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(cluster, "score", boom)
    monkeypatch.setattr(cluster, "evaluate", boom)
    status, r = await post(client, "filter", body(o.extender_args(o.pod("p", gpus=1), names=["h1"])))
    assert status == 200 and "kernel exploded" in r["Error"]
    status, _ = await post(client, "prioritize", body(o.extender_args(o.pod("p", gpus=1), names=["h1"])))
    assert status == 500
    assert (await client.get("/healthz")).status == 200


async def test_ops_endpoints(client: Client, cluster: ExtenderContext) -> None:
    assert (await client.get("/readyz")).status == 200
    # A watch not synced yet (not `warm`: the fixture's own warm-up task may set it again at any moment)
    cluster.cache.synced["pods"] = False
    resp = await client.get("/readyz")
    assert resp.status == 503 and "waiting for pods" in await resp.text()
    cluster.cache.synced["pods"] = True
    await post(client, "filter", body(o.extender_args(o.pod("p", gpus=4), names=ALL)))
    text = await (await client.get("/metrics")).text()
    for needle in [
        'gpuplace_extender_request_seconds_bucket{le="0.005",verb="filter"}',
        'gpuplace_filter_rejections_total{reason="no_gpus"} 1.0',
        'gpuplace_gpus{model="H100-80GB",state="allocated"} 6.0',
        'gpuplace_gpus{model="H100-80GB",state="free"} 10.0',
        'gpuplace_node_gpus{model="H100-80GB",node="h0",state="free"} 2.0',
        'gpuplace_stranded_gpus{model="H100-80GB"} 0.0',
        'gpuplace_cache_synced{kind="pods"} 1.0',
    ]:
        assert needle in text, needle


@pytest.mark.parametrize("unready", ["pods", "nodes", "kernels"])
async def test_verbs_refuse_to_answer_from_an_unsynced_cache(
    aiohttp_client: Any, cluster: ExtenderContext, unready: str
) -> None:
    """A restarted standalone gpuplace must not place pods before its lists are in: kube-scheduler
    retries pending pods the moment the port opens, and a filter answered while the pod list was
    still coming in put a second MIG pod on a device a bound pod held (CI, test_packing restart)."""
    client = await aiohttp_client(make_extender_app(cluster))  # no warm-up task to race `warm`
    if unready == "kernels":
        cluster.warm = False
    else:
        cluster.cache.synced[unready] = False
    p = binder_of(cluster).add(o.pod("p", gpus=1))
    args = body(o.extender_args(p, names=ALL))
    status, r = await post(client, "filter", args)
    assert status == 200 and r["NodeNames"] is None and r["Nodes"] is None
    assert "not ready" in r["Error"] and ("kernels" if unready == "kernels" else unready) in r["Error"]
    status, _ = await post(client, "prioritize", args)
    assert status == 503
    m = p["metadata"]
    bind = {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": "h1"}
    status, r = await post(client, "bind", body(bind))
    assert status == 200 and "not ready" in r["Error"]
    assert not binder_of(cluster).pods[("default", "p")]["spec"].get("nodeName")
    assert not cluster.cache.reservations
    status, _ = await post(client, "preempt", body({"Pod": p, "NodeNameToMetaVictims": {}}))
    assert status == 503
