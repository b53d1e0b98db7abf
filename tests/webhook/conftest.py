"""Fixtures for the webhook tests: a fake kube-apiserver and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.webhook.fakeapi import FakeApiserver


@pytest.fixture
async def apiserver(aiohttp_server: Callable[..., Any]) -> AsyncIterator[tuple[FakeApiserver, Configuration]]:
    fake = FakeApiserver()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    yield fake, Configuration(host=str(server.make_url("")).rstrip("/"))


@pytest.fixture
async def client(apiserver: tuple[FakeApiserver, Configuration]) -> AsyncIterator[ApiClient]:
    async with ApiClient(apiserver[1]) as api:
        yield api
