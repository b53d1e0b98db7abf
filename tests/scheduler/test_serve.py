"""`gpuplace serve`: configuration handling, and the whole service against a fake API server."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
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


PORT_ATTEMPTS = 3


async def serving(
    cfg_file: Path,
    config_for: Callable[[int, int], str],
    listening: Callable[[int, int], Awaitable[object]],
    *,
    ports: Callable[[], int] = free_port,
) -> tuple[asyncio.Task[None], asyncio.Event, int, int]:
    """`serve` on two free ports (extender, webhook), returned once `listening(port, hook)` holds.
    free_port() only says a port was free a moment ago: another process on the machine can take it
    first, and serve() then fails with EADDRINUSE; the start is retried on new ports."""
    for attempt in range(PORT_ATTEMPTS):
        port = ports()
        hook = ports()
        while hook == port:
            hook = ports()
        await asyncio.to_thread(cfg_file.write_text, config_for(port, hook))
        stop = asyncio.Event()
        task = asyncio.create_task(serve(load_config(cfg_file), stop))

        async def up(port: int = port, hook: int = hook, task: asyncio.Task[None] = task) -> object:
            # a port someone else holds may accept and never answer: stop probing once serve() ended
            probe = asyncio.ensure_future(listening(port, hook))
            await asyncio.wait({probe, task}, return_when=asyncio.FIRST_COMPLETED)
            if not probe.done():
                probe.cancel()
                return True
            return probe.result()  # an error: not yet

        await wait_until(up, within=PATIENCE, interval=0.02, what="gpuplace serve to listen")
        if not task.done():
            return task, stop, port, hook
        exc = task.exception()
        if not (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE) or attempt == PORT_ATTEMPTS - 1:
            await task  # raises what serve() raised
    raise AssertionError("unreachable")


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
    kubeconfig = write_kubeconfig(tmp_path / "kc", str(server.make_url("")))

    def config(port: int, hook: int) -> str:  # no webhook here: `hook` stays unused
        return (
            f"kubernetes: {{kubeconfig: {kubeconfig}}}\n"
            f"scheduler: {{host: 127.0.0.1, port: {port}, reservation_ttl_seconds: 5, metrics: {{refresh_seconds: 0.01}}}}\n"
        )

    async with aiohttp.ClientSession() as http:

        async def ready(port: int, hook: int) -> bool:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status == 200

        task, stop, port, _ = await serving(tmp_path / "gpuplace.yaml", config, ready)
        base = f"http://127.0.0.1:{port}"
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
        writes = [(v, orjson.loads(body)) for v, body in api.requests if v in ("PATCH", "BIND")]
        assert [method for method, _ in writes] == ["PATCH", "BIND"]  # the intent, then the Binding
        (_, intent), (_, binding) = writes
        record = stored["metadata"]["annotations"]["gpuplace.io/gpus"]
        assert binding["metadata"]["annotations"]["gpuplace.io/gpus"] == record  # the record, in the Binding
        assert intent["metadata"]["uid"] == m["uid"]  # the intent's precondition
        marker = orjson.loads(intent["metadata"]["annotations"]["gpuplace.io/binding"])
        assert marker["record"] == orjson.loads(record)
        assert binding["metadata"]["uid"] == m["uid"] and binding["target"] == {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "n2",
        }

        async def confirmed() -> str | None:  # the watch confirms the reservation
            text = await (await http.get(f"{base}/metrics")).text()
            return text if "gpuplace_reservations 0.0" in text else None

        text = await wait_until(
            confirmed, within=PATIENCE, interval=0.02, what="the watch to confirm the bind"
        )
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
    kubeconfig = write_kubeconfig(tmp_path / "kc", str(server.make_url("")))

    def config(port: int, hook: int) -> str:
        return (
            f"kubernetes: {{kubeconfig: {kubeconfig}}}\n"
            f"scheduler: {{host: 127.0.0.1, port: {port}}}\n"
            f"webhook_server: {{enabled: true, host: 127.0.0.1, port: {hook}, cert_file: {certs.cert}, "
            f"key_file: {certs.key}}}\n"
        )

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

        async def listening(port: int, hook: int) -> aiohttp.ClientResponse:
            return await http.post(f"https://127.0.0.1:{hook}/mutate", data=orjson.dumps(review), ssl=trust)

        task, stop, port, hook = await serving(tmp_path / "gpuplace.yaml", config, listening)
        resp = await listening(port, hook)
        assert resp.status == 200
        assert (await resp.json())["response"]["uid"] == "u1"
        metrics = await (await http.get(f"http://127.0.0.1:{port}/metrics")).text()
        assert "gpuplace_webhook_reviews_total" in metrics  # one registry for both faces
    stop.set()
    await asyncio.wait_for(task, PATIENCE)


async def test_serve_takes_other_ports_when_one_was_taken_meanwhile(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """The first port handed out is already someone else's (a listening socket). The tests above used
    free_port() once and would then have waited PATIENCE for a serve() that had died on EADDRINUSE."""
    api = FakeApiServer()
    server = await aiohttp_server(api.app())
    kubeconfig = write_kubeconfig(tmp_path / "kc", str(server.make_url("")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        handed: list[int] = []

        def racing() -> int:
            handed.append(busy if not handed else free_port())
            return handed[-1]

        async with aiohttp.ClientSession() as http:

            async def healthy(port: int, hook: int) -> bool:
                return (await http.get(f"http://127.0.0.1:{port}/healthz")).status == 200

            task, stop, port, _ = await serving(
                tmp_path / "gpuplace.yaml",
                lambda port, hook: (
                    f"kubernetes: {{kubeconfig: {kubeconfig}}}\nscheduler: {{host: 127.0.0.1, port: {port}}}\n"
                ),
                healthy,
                ports=racing,
            )
            assert handed[0] == busy and port != busy and not task.done()
    stop.set()
    await asyncio.wait_for(task, PATIENCE)


async def test_a_restarted_serve_holds_the_gpus_a_binding_left_in_flight_may_claim(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """The first process's Binding waits at the API server while its client gives up; a second process
    (a restart after a crash, or a new leader) starts on the same API server before that Binding
    commits. It must hold those GPUs: the old code listed the pod unbound and offered its GPUs to
    the next pod, and the late commit then put two pods on them."""
    api = FakeApiServer()
    api.put("nodes", o.node("n1"))
    first, rival = api.put("pods", o.pod("first", gpus=8)), api.put("pods", o.pod("rival", gpus=8))
    server = await aiohttp_server(api.app())
    kubeconfig = write_kubeconfig(tmp_path / "kc", str(server.make_url("")))

    def config(port: int, hook: int) -> str:
        return (
            f"kubernetes: {{kubeconfig: {kubeconfig}}}\n"
            f"scheduler: {{host: 127.0.0.1, port: {port}, bind_timeout_seconds: 0.5}}\n"
        )

    async with aiohttp.ClientSession() as http:

        async def ready(port: int, hook: int) -> bool:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status == 200

        async def verb(port: int, name: str, body: Any) -> Any:
            resp = await http.post(f"http://127.0.0.1:{port}/scheduler/{name}", data=orjson.dumps(body))
            return await resp.json()

        def bind_of(pod: dict[str, Any]) -> dict[str, str]:
            m = pod["metadata"]
            return {"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": "n1"}

        old, old_stop, old_port, _ = await serving(tmp_path / "old.yaml", config, ready)
        assert (await verb(old_port, "filter", o.extender_args(first, names=["n1"])))["NodeNames"] == ["n1"]
        api.hold_bindings = True
        assert "is unknown" in (await verb(old_port, "bind", bind_of(first)))["Error"]
        api.hold_bindings = False
        new, new_stop, new_port, _ = await serving(tmp_path / "new.yaml", config, ready)
        r = await verb(new_port, "filter", o.extender_args(rival, names=["n1"]))
        assert r["NodeNames"] == [] and "0 free here" in r["FailedNodes"]["n1"], r
        assert "cannot bind" in (await verb(new_port, "bind", bind_of(rival)))["Error"]
        assert api.commit_late() == [201]  # the first process's Binding commits after all
        assert not api.objects["pods"]["default/rival"]["spec"].get("nodeName")

        async def settled() -> bool:  # the new process's watch turns the hold into first's record
            text = await (await http.get(f"http://127.0.0.1:{new_port}/metrics")).text()
            return "gpuplace_reservations 0.0" in text

        await wait_until(settled, within=PATIENCE, interval=0.02, what="the watch to settle the hold")
        r = await verb(new_port, "filter", o.extender_args(rival, names=["n1"]))
        assert r["NodeNames"] == [], r
    for stop, task in ((old_stop, old), (new_stop, new)):
        stop.set()
        await asyncio.wait_for(task, PATIENCE)
