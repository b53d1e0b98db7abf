"""Development certificates: valid for the apiserver's names, usable by the webhook's TLS, private key 0600."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.webhook.tlshelpers import client_context, session
from webhook.devcerts import default_sans, make_dev_certs, parse_san
from webhook.tls import ReloadingTLS


def sans_of(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [f"IP:{n.value}" if isinstance(n, x509.IPAddress) else f"DNS:{n.value}" for n in names]


def test_files_names_and_modes(tmp_path: Path) -> None:
    certs = make_dev_certs(tmp_path / "certs")
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert certs.key.stat().st_mode & 0o777 == 0o600
    assert sans_of(certs.cert) == ["IP:127.0.0.1", "DNS:localhost", "DNS:gpuplace.gpuplace-system.svc"]
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert base64.b64decode(certs.ca_bundle()) == certs.ca_cert.read_bytes()


def test_namespace_and_custom_sans(tmp_path: Path) -> None:
    assert default_sans(namespace="ml") == ["IP:127.0.0.1", "DNS:localhost", "DNS:gpuplace.ml.svc"]
    certs = make_dev_certs(tmp_path, sans=["10.0.0.7", "gpu.example", "DNS:x.svc", "ip:::1"])
    assert sans_of(certs.cert) == ["IP:10.0.0.7", "DNS:gpu.example", "DNS:x.svc", "IP:::1"]


@pytest.mark.parametrize("bad", ["URI:https://x", "DNS:", "IP:300.1.1.1"])
def test_bad_sans_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"subject alternative name|does not appear to be"):
        parse_san(bad)


def test_no_sans_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        make_dev_certs(tmp_path, sans=[])


async def test_an_apiserver_style_client_accepts_them(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    certs = make_dev_certs(tmp_path)
    tls = ReloadingTLS(cert_file=certs.cert, key_file=certs.key)
    app = web.Application()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    server = await aiohttp_server(app, ssl=tls.context)
    async with session(client_context(ca_file=certs.ca_cert)) as client:
        for name in ("127.0.0.1", "localhost", "gpuplace.gpuplace-system.svc"):
            async with client.get(server.make_url("/"), server_hostname=name) as response:
                assert response.status == 200, name

    make_dev_certs(tmp_path, sans=["IP:127.0.0.1"])  # regenerate in place: a new CA
    assert tls.reload_if_changed()
    async with (
        session(client_context(ca_file=certs.ca_cert)) as client,
        client.get(server.make_url("/")) as response,
    ):
        assert response.status == 200
