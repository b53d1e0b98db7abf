"""Certificate reload through real HTTPS: new handshakes see new files; bad files never replace good ones."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.webhook.tlshelpers import client_context, session, write_pair
from webhook.tls import ReloadingTLS, reload_ctx


async def handshake_ok(url: Any, ca: trustme.CA) -> bool:
    async with session(client_context(ca)) as client:
        try:
            async with client.get(url / "healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:  # a certificate the client rejects, or a handshake the server fails
            return False


@pytest.fixture
def cas() -> tuple[trustme.CA, trustme.CA]:
    return trustme.CA(), trustme.CA()


def hello_app() -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    return app


async def test_reload_switches_certificates_for_new_connections(
    aiohttp_server: Callable[..., Any], cas: tuple[trustme.CA, trustme.CA], tmp_path: Path
) -> None:
    old, new = cas
    cert_file, key_file = write_pair(old, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    server = await aiohttp_server(hello_app(), ssl=tls.context)
    url = server.make_url("")
    assert await handshake_ok(url, old) and not await handshake_ok(url, new)

    assert tls.reload_if_changed() is False  # nothing changed yet
    write_pair(new, tmp_path)
    assert tls.reload_if_changed() is True and tls.reloads == 1
    assert await handshake_ok(url, new) and not await handshake_ok(url, old)


async def test_a_mismatched_or_missing_pair_keeps_the_current_certificate(
    aiohttp_server: Callable[..., Any],
    cas: tuple[trustme.CA, trustme.CA],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = cas
    cert_file, key_file = write_pair(old, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    server = await aiohttp_server(hello_app(), ssl=tls.context)
    url = server.make_url("")

    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    new_cert, _ = write_pair(new, elsewhere)
    cert_file.write_bytes(new_cert.read_bytes())  # new certificate, old key: half-rotated Secret
    assert tls.reload_if_changed() is False
    assert "not a valid pair yet" in caplog.text
    assert await handshake_ok(url, old)

    key_file.unlink()
    assert tls.reload_if_changed() is False
    assert "cannot read TLS files" in caplog.text
    assert await handshake_ok(url, old)

    write_pair(new, tmp_path)  # rotation completes
    assert tls.reload_if_changed() is True
    assert await handshake_ok(url, new)


async def test_files_changing_during_a_load_never_break_the_served_certificate(
    aiohttp_server: Callable[..., Any],
    cas: tuple[trustme.CA, trustme.CA],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Secret's symlink swap races the reload: right after one read of the files, tls.crt already
    belongs to the next rotation while tls.key does not. Loading that into the served context would
    leave it with a certificate and no key; a fresh context per load keeps serving a complete pair."""
    old, new = cas
    cert_file, key_file = write_pair(old, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    server = await aiohttp_server(hello_app(), ssl=tls.context)
    url = server.make_url("")
    assert await handshake_ok(url, old)

    write_pair(new, tmp_path)
    elsewhere = tmp_path / "next"
    elsewhere.mkdir()
    next_cert, _ = write_pair(trustme.CA(), elsewhere)
    real_load = ssl.SSLContext.load_cert_chain

    def racing_load(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        real_load(self, certfile, keyfile, password)
        cert_file.write_bytes(next_cert.read_bytes())  # the next rotation's certificate, its key not yet there

    with monkeypatch.context() as patched:
        patched.setattr(ssl.SSLContext, "load_cert_chain", racing_load)
        tls.reload_if_changed()
    assert await handshake_ok(url, new)  # the pair that loaded completely serves
    assert tls.reload_if_changed() is False  # the half-rotated files are refused...
    assert await handshake_ok(url, new)  # ...and the complete pair keeps serving


async def test_the_server_keeps_its_context_and_new_handshakes_switch_to_the_newest(
    aiohttp_server: Callable[..., Any], cas: tuple[trustme.CA, trustme.CA], tmp_path: Path
) -> None:
    """aiohttp hands the context to loop.create_server, which holds it: the served context object never
    changes, only what the SNI callback selects for each new handshake."""
    old, new = cas
    cert_file, key_file = write_pair(old, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    served = tls.context
    server = await aiohttp_server(hello_app(), ssl=served)
    url = server.make_url("")
    write_pair(new, tmp_path)
    assert tls.reload_if_changed() is True
    assert tls.context is served and tls.current is not served
    assert await handshake_ok(url, new) and not await handshake_ok(url, old)


async def test_the_cleanup_ctx_task_polls_and_stops_with_the_app(
    aiohttp_server: Callable[..., Any], cas: tuple[trustme.CA, trustme.CA], tmp_path: Path
) -> None:
    old, new = cas
    cert_file, key_file = write_pair(old, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    app = hello_app()
    app.cleanup_ctx.append(reload_ctx(tls, interval=0.02))
    server = await aiohttp_server(app, ssl=tls.context)
    write_pair(new, tmp_path)
    async with asyncio.timeout(60):  # a guard against a hang, not a speed requirement
        while not tls.reloads:  # noqa: ASYNC110 - the counter the reload task bumps is all there is to wait on
            await asyncio.sleep(0.02)
    assert await handshake_ok(server.make_url(""), new)
    await server.close()
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "gpuplace-webhook-tls-reload"]
    assert tasks == []


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ReloadingTLS(cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key")
