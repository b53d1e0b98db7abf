"""The webhook through real HTTPS (aiohttp server with a trustme certificate): answers, errors, metrics."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from prometheus_client import CollectorRegistry

from tests.webhook.helpers import container, gpu_pod, owner_ref, pod, review
from tests.webhook.tlshelpers import client_context, session, write_pair
from webhook.http import make_webhook_app
from webhook.owners import DictOwners
from webhook.settings import WebhookSettings
from webhook.tls import ReloadingTLS


class BrokenOwners(DictOwners):
    """Breaks the Owners contract (it raises), to prove a bug becomes a 500 and the server keeps serving."""

    async def get_owner(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise RuntimeError("boom")


class Webhook:
    def __init__(self, url: Any, client: aiohttp.ClientSession, registry: CollectorRegistry) -> None:
        self.url, self.client, self.registry = url, client, registry

    async def post(self, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else orjson.dumps(body)
        async with self.client.post(
            self.url / "mutate", data=data, headers={"Content-Type": "application/json"}
        ) as response:
            text = await response.read()
            if response.content_type == "application/json":
                return response.status, orjson.loads(text)
            return response.status, text.decode()

    def count(self, outcome: str, reason: str = "") -> float:
        value = self.registry.get_sample_value(
            "gpuplace_webhook_reviews_total", {"outcome": outcome, "reason": reason}
        )
        return value or 0.0


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def webhook(
    aiohttp_server: Callable[..., Any], ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[Webhook]:
    registry = CollectorRegistry()
    cert_file, key_file = write_pair(ca, tmp_path)
    tls = ReloadingTLS(cert_file=cert_file, key_file=key_file)
    app = make_webhook_app(
        settings=WebhookSettings(max_review_bytes=65536), owners=BrokenOwners(), registry=registry
    )
    server = await aiohttp_server(app, ssl=tls.context)
    async with session(client_context(ca)) as client:
        yield Webhook(server.make_url(""), client, registry)


async def test_gpu_pod_is_patched_over_https(webhook: Webhook) -> None:
    status, body = await webhook.post(review(pod(container(limits={"nvidia.com/gpu": "1"}))))
    assert status == 200
    patch = orjson.loads(base64.b64decode(body["response"]["patch"]))
    assert {
        "op": "add",
        "path": "/spec/containers/0/resources/requests",
        "value": {"nvidia.com/gpu": "1"},
    } in patch
    assert webhook.count("patched") == 1
    assert webhook.registry.get_sample_value("gpuplace_webhook_review_duration_seconds_count") == 1


async def test_non_gpu_pod_passes_unchanged(webhook: Webhook) -> None:
    status, body = await webhook.post(review(pod(container(limits={"cpu": "1"}))))
    assert (status, body["response"]) == (200, {"uid": "uid-1", "allowed": True})
    assert webhook.count("unchanged") == 1


async def test_denial_is_a_200_with_the_message(webhook: Webhook) -> None:
    p = pod(container("x", requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "2"}))
    status, body = await webhook.post(review(p))
    assert status == 200 and body["response"]["allowed"] is False
    assert body["response"]["status"]["message"].startswith(
        'container "x": nvidia.com/gpu requests 1 but limits 2'
    )
    assert webhook.count("denied", "requests_limits_conflict") == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"{not json", "body is not JSON: "), (b'{"kind": "Pod"}', "not a valid AdmissionReview: kind must be")],
)
async def test_malformed_input_is_a_400_with_a_message(webhook: Webhook, raw: bytes, message: str) -> None:
    status, text = await webhook.post(None, raw=raw)
    assert status == 400 and text.startswith(message)
    assert webhook.count("error", "malformed") == 1


async def test_oversized_body_is_a_413(webhook: Webhook) -> None:
    status, text = await webhook.post(None, raw=b" " * 100_000)
    assert (status, text) == (413, "AdmissionReview larger than 65536 bytes")
    assert webhook.count("error", "too_large") == 1


async def test_a_bug_is_a_500_and_the_server_keeps_serving(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    status, text = await webhook.post(review(gpu_pod(owners=[owner_ref("Job", "train")])))
    assert (status, text) == (500, "internal error in the gpuplace webhook; see its log")
    assert "RuntimeError: boom" in caplog.text
    assert webhook.count("error", "internal") == 1
    status, _ = await webhook.post(review(gpu_pod()))
    assert status == 200


async def test_many_concurrent_reviews(webhook: Webhook) -> None:
    results = await asyncio.gather(*(webhook.post(review(gpu_pod(), uid=f"u{i}")) for i in range(50)))
    assert {status for status, _ in results} == {200}
    assert sorted(body["response"]["uid"] for _, body in results) == sorted(f"u{i}" for i in range(50))


async def test_healthz_and_wrong_method(webhook: Webhook) -> None:
    async with webhook.client.get(webhook.url / "healthz") as response:
        assert (response.status, await response.text()) == (200, "ok")
    async with webhook.client.get(webhook.url / "mutate") as response:
        assert response.status == 405


async def test_a_client_that_does_not_trust_the_ca_is_refused(webhook: Webhook) -> None:
    async with session(client_context(trustme.CA())) as stranger:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await stranger.post(webhook.url / "mutate", data=b"{}")


def test_two_apps_can_share_nothing_but_a_registry_per_app() -> None:
    settings, owners = WebhookSettings(), DictOwners()
    make_webhook_app(settings=settings, owners=owners, registry=CollectorRegistry())
    make_webhook_app(settings=settings, owners=owners, registry=CollectorRegistry())
    shared = CollectorRegistry()
    make_webhook_app(settings=settings, owners=owners, registry=shared)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        make_webhook_app(settings=settings, owners=owners, registry=shared)
