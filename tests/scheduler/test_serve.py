"""`gpuplace serve`: configuration handling, and the whole service against a fake API server."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gpuplace.config import ConfigError, load_config
from gpuplace.localcluster.waiting import wait_until
from gpuplace.serve import main, serve
from tests.scheduler import objects as o
from tests.scheduler.fake_apiserver import FakeApiServer, write_kubeconfig

PATIENCE = 120.0  # a guard against a hang, not a speed claim: each wait ends as soon as its condition holds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_yaml_with_environment_overrides(tmp_path: Path, monkeypatch: Any) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("scheduler:\n  port: 9000\n  watch: {timeout_seconds: 60}\nwebhook:\n  gang_label: a/b\n")
    monkeypatch.setenv("GPUPLACE_SCHEDULER__WATCH__PAGE_SIZE", "100")
    monkeypatch.setenv("GPUPLACE_LOGGING__JSON", "true")
    cfg = load_config(f)
    assert cfg.scheduler.port == 9000 and cfg.scheduler.watch.timeout_seconds == 60
    assert cfg.scheduler.watch.page_size == 100 and cfg.logging.json_format
    assert cfg.webhook.gang_label == "a/b"  # type: ignore[attr-defined]
    monkeypatch.setenv("GPUPLACE_SCHEDULER__PORT", "9100")
    assert load_config(f).scheduler.port == 9100


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("scheduler:\n  port: 70000\n", "scheduler.port"),
        ("scheduler:\n  policy: magic\n", "scheduler.policy"),
        ("scheduler:\n  prot: 1\n", "scheduler.prot"),
        ("webhook_server:\n  enabled: true\n", "webhook_server"),
        ("- a\n", "top level must be a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, field: str, capsys: Any) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(f)
    assert main(["--config", str(f)]) == 2
    assert field in capsys.readouterr().err


def test_check_config_prints_the_effective_config(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("scheduler: {port: 9001}\n")
    assert main(["--config", str(f), "--check-config"]) == 0
    assert "port: 9001" in capsys.readouterr().out


async def test_serve_end_to_end_against_a_fake_api_server(tmp_path: Path, aiohttp_server: Any) -> None:
    api = FakeApiServer()
    api.put("nodes", o.node("n1"))
    api.put("nodes", o.node("n2"))
    api.put("pods", o.pod("running", gpus=6, node_name="n1", phase="Running"))
    pending = api.put("pods", o.pod("train", gpus=4))
    server = await aiohttp_server(api.app())
    port = free_port()
    cfg_file = tmp_path / "gpuplace.yaml"
    cfg_file.write_text(
        f"kubernetes: {{kubeconfig: {write_kubeconfig(tmp_path / 'kc', str(server.make_url('')))}}}\n"
        f"scheduler: {{host: 127.0.0.1, port: {port}, reservation_ttl_seconds: 5, metrics: {{refresh_seconds: 0.01}}}}\n"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_config(cfg_file), stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async def ready() -> bool:
            return (await http.get(f"{base}/readyz")).status == 200

        await wait_until(ready, within=PATIENCE, interval=0.02, what="/readyz")
        args = orjson.dumps(o.extender_args(pending, names=["n1", "n2"]))
        r = await (await http.post(f"{base}/scheduler/filter", data=args)).json()
        assert r["NodeNames"] == ["n2"] and "n1" in r["FailedNodes"]
        m = pending["metadata"]
        bind = {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": "n2"}
        assert await (await http.post(f"{base}/scheduler/bind", data=orjson.dumps(bind))).json() == {
            "Error": ""
        }
        stored = api.objects["pods"]["default/train"]
        assert stored["spec"]["nodeName"] == "n2" and "gpuplace.io/gpus" in stored["metadata"]["annotations"]
        binds = [orjson.loads(body) for method, body in api.requests if method == "BIND"]
        assert [b["metadata"]["annotations"]["gpuplace.io/gpus"] for b in binds] == [
            stored["metadata"]["annotations"]["gpuplace.io/gpus"]
        ]  # one write: the Binding carries the record
        assert binds[0]["metadata"]["uid"] == m["uid"] and binds[0]["target"] == {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "n2",
        }
        assert not [method for method, _ in api.requests if method == "PATCH"]
        async def confirmed() -> str | None:  # the watch confirms the reservation
            text = await (await http.get(f"{base}/metrics")).text()
            return text if "gpuplace_reservations 0.0" in text else None

        text = await wait_until(confirmed, within=PATIENCE, interval=0.02, what="the watch to confirm the bind")
        assert 'gpuplace_binds_total{result="ok"} 1.0' in text
        api.put("pods", stored, "DELETED")  # deleted pods release at once
        async def released() -> bool:
            r2 = await (
                await http.post(
                    f"{base}/scheduler/filter",
                    data=orjson.dumps(o.extender_args(o.pod("eight", gpus=8), names=["n2"])),
                )
            ).json()
            return bool(r2["NodeNames"] == ["n2"])

        await wait_until(released, within=PATIENCE, interval=0.02, what="the deleted pod's GPUs to be free")
    stop.set()
    await asyncio.wait_for(task, PATIENCE)


async def test_serve_mounts_the_webhook_on_its_own_https_port(tmp_path: Path, aiohttp_server: Any) -> None:
    ssl = pytest.importorskip("ssl")
    devcerts = pytest.importorskip("webhook.devcerts")
    certs = devcerts.make_dev_certs(tmp_path / "certs", sans=["127.0.0.1"])
    api = FakeApiServer()
    server = await aiohttp_server(api.app())
    port, hook = free_port(), free_port()
    cfg_file = tmp_path / "gpuplace.yaml"
    cfg_file.write_text(
        f"kubernetes: {{kubeconfig: {write_kubeconfig(tmp_path / 'kc', str(server.make_url('')))}}}\n"
        f"scheduler: {{host: 127.0.0.1, port: {port}}}\n"
        f"webhook_server: {{enabled: true, host: 127.0.0.1, port: {hook}, cert_file: {certs.cert}, "
        f"key_file: {certs.key}}}\n"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_config(cfg_file), stop))
    trust = ssl.create_default_context(cafile=str(certs.ca_cert))
    gpu_pod = o.pod("p", gpus=1)
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "userInfo": {"username": "alice"},
            "object": gpu_pod,
            "oldObject": None,
        },
    }
    async with aiohttp.ClientSession() as http:
        async def listening() -> aiohttp.ClientResponse:
            return await http.post(f"https://127.0.0.1:{hook}/mutate", data=orjson.dumps(review), ssl=trust)

        resp = await wait_until(listening, within=PATIENCE, interval=0.02, what="the webhook to listen")
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "u1"
        metrics = await (await http.get(f"http://127.0.0.1:{port}/metrics")).text()
        assert "gpuplace_webhook_reviews_total" in metrics  # one registry for both faces
    stop.set()
    await asyncio.wait_for(task, PATIENCE)
