"""KubeOwners against a fake kube-apiserver: caching, coalescing, uid checks, and every failure as None."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from gpuplace.localcluster.waiting import wait_until
from tests.webhook.fakeapi import JOB, Clock
from webhook.owners import KubeOwners
from webhook.settings import WebhookSettings


def owners(client: ApiClient, clock: Clock | None = None, **kwargs: Any) -> KubeOwners:
    return KubeOwners(api_client=client, clock=clock or Clock(), **kwargs)


async def test_reads_once_and_serves_from_cache_until_the_ttl(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    clock = Clock()
    reader = owners(client, clock, ttl_seconds=30)
    assert await reader.get_job("ns", "train") == JOB
    assert await reader.get_job("ns", "train", uid="u1") == JOB
    assert fake.paths == ["/apis/batch/v1/namespaces/ns/jobs/train"]
    clock.now += 31
    assert await reader.get_job("ns", "train") == JOB
    assert len(fake.paths) == 2


async def test_concurrent_reads_share_one_request(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    fake.delay = 0.05
    reader = owners(client)
    results = await asyncio.gather(*(reader.get_job("ns", "train") for _ in range(20)))
    assert results == [JOB] * 20
    assert len(fake.paths) == 1 and reader.requests == 1


async def test_a_cancelled_reader_does_not_cancel_the_shared_read(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    fake.gate = asyncio.Event()
    reader = owners(client)
    first = asyncio.create_task(reader.get_job("ns", "train"))

    async def reached() -> bool:
        return bool(fake.paths)

    await wait_until(reached, interval=0.01, what="the first read to reach the server")
    second = asyncio.create_task(reader.get_job("ns", "train"))
    await asyncio.sleep(0)  # second joins the read in flight
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    fake.gate.set()
    assert await second == JOB
    assert len(fake.paths) == 1  # the shared read survived its first reader's cancellation


async def test_a_different_uid_bypasses_the_cache(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    reader = owners(client)
    assert await reader.get_job("ns", "train") == JOB
    recreated = {**JOB, "metadata": {**JOB["metadata"], "uid": "u2"}}  # type: ignore[dict-item]
    fake.objects["/apis/batch/v1/namespaces/ns/jobs/train"] = recreated
    assert await reader.get_job("ns", "train", uid="u2") == recreated
    assert await reader.get_job("ns", "train", uid="u1") is None  # the old one is gone
    assert len(fake.paths) == 3


async def test_missing_objects_are_none_and_cached_briefly(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    clock = Clock()
    reader = owners(client, clock, missing_ttl_seconds=5)
    assert await reader.get_owner("jobset.x-k8s.io/v1alpha2", "JobSet", "ns", "nope") is None
    assert await reader.get_owner("jobset.x-k8s.io/v1alpha2", "JobSet", "ns", "nope") is None
    assert fake.paths == ["/apis/jobset.x-k8s.io/v1alpha2/namespaces/ns/jobsets/nope"]
    clock.now += 6
    assert await reader.get_owner("jobset.x-k8s.io/v1alpha2", "JobSet", "ns", "nope") is None
    assert len(fake.paths) == 2


@pytest.mark.parametrize("status", [403, 500, 503])
async def test_api_errors_are_unknown(
    apiserver: Any, client: ApiClient, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = apiserver
    fake.status = status
    clock = Clock()
    reader = owners(client, clock, error_ttl_seconds=2)
    assert await reader.get_job("ns", "train") is None
    assert f"HTTP {status}" in caplog.text
    fake.status = None
    assert await reader.get_job("ns", "train") is None  # still within the error TTL
    clock.now += 3
    assert await reader.get_job("ns", "train") == JOB


async def test_a_slow_apiserver_times_out_as_unknown(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    fake.delay = 3600.0  # never answers within the test
    reader = owners(client, timeout_seconds=0.1)
    async with asyncio.timeout(60):  # a guard against a hang: the read must give up on its own
        assert await reader.get_job("ns", "train") is None


async def test_refresh_reads_the_current_object_and_the_cache_then_serves_it(
    apiserver: Any, client: ApiClient
) -> None:
    fake, _ = apiserver
    reader = owners(client, ttl_seconds=3600)
    assert await reader.get_job("ns", "train") == JOB
    resized = {**JOB, "spec": {"parallelism": 8}}
    fake.objects["/apis/batch/v1/namespaces/ns/jobs/train"] = resized
    assert await reader.get_job("ns", "train") == JOB  # within the TTL, nothing says it changed
    assert await reader.get_job("ns", "train", refresh=True) == resized
    assert await reader.get_job("ns", "train") == resized
    assert len(fake.paths) == 2


async def test_an_unreachable_apiserver_is_unknown(unused_tcp_port: int) -> None:
    async with ApiClient(Configuration(host=f"http://127.0.0.1:{unused_tcp_port}")) as api:
        assert await KubeOwners(api_client=api).get_job("ns", "train") is None


async def test_a_non_object_answer_is_unknown(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    fake.objects["/apis/ray.io/v1/namespaces/ns/rayclusters/rc"] = ["not", "an", "object"]
    assert await owners(client).get_owner("ray.io/v1", "RayCluster", "ns", "rc") is None


async def test_unknown_kinds_are_never_requested(apiserver: Any, client: ApiClient) -> None:
    fake, _ = apiserver
    reader = owners(client)
    assert await reader.get_owner("apps/v1", "StatefulSet", "ns", "s") is None
    assert await reader.get_owner("v1", "Pod", "ns", "p") is None
    assert fake.paths == []


async def test_the_cache_is_bounded(apiserver: Any, client: ApiClient) -> None:
    reader = owners(client, max_entries=3)
    for i in range(6):
        await reader.get_owner("ray.io/v1", "RayCluster", "ns", f"rc-{i}")
    assert len(reader._cache) == 3


def test_from_settings(client: ApiClient) -> None:
    reader = KubeOwners.from_settings(
        api_client=client,
        settings=WebhookSettings(owner_cache_ttl_seconds=7, owner_lookup_timeout_seconds=0.5),
    )
    assert (reader._ttl, reader._timeout) == (7, 0.5)
