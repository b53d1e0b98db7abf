"""Test CAs and HTTPS clients for the functional tests."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import trustme


def write_pair(ca: trustme.CA, directory: Path, *names: str) -> tuple[Path, Path]:
    """Issue a serving certificate from `ca` and write tls.crt / tls.key into `directory`."""
    cert = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cert_file), append=index > 0)
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


def client_context(ca: trustme.CA | None = None, *, ca_file: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if ca is not None:
        ca.configure_trust(context)
    return context


def session(context: ssl.SSLContext) -> aiohttp.ClientSession:
    """A session that opens a new TLS connection for every request (so every request sees the current cert)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True))
