"""Leadership as a deadline (scheduler/leader.py): what a replica may do, decided at the moment of the call."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from gpuplace.localcluster.waiting import wait_until
from scheduler import leader
from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.http import make_extender_app
from scheduler.leader import (
    LEASE_DURATION_SECONDS,
    RENEW_DEADLINE_SECONDS,
    RETRY_PERIOD_SECONDS,
    LeaderBinder,
    LeaderElectionSettings,
    LeaseRole,
    NotLeaderError,
    campaign,
)
from scheduler.service import attach_background
from tests.scheduler import objects as o


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_defaults_are_the_documented_lease_timings() -> None:
    s = LeaderElectionSettings()
    assert (s.lease_duration_seconds, s.renew_deadline_seconds, s.retry_period_seconds) == (15, 10, 2)
    assert (LEASE_DURATION_SECONDS, RENEW_DEADLINE_SECONDS, RETRY_PERIOD_SECONDS) == (15, 10, 2)


@pytest.mark.parametrize(("lease", "renew", "retry"), [(10, 10, 2), (15, 10, 9), (15, 2, 2), (0.5, 0.4, 0.1)])
def test_inconsistent_timings_are_refused(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValidationError, match="lease_duration_seconds"):
        LeaderElectionSettings(
            lease_duration_seconds=lease, renew_deadline_seconds=renew, retry_period_seconds=retry
        )


def test_identity_and_namespace_come_from_the_downward_api(monkeypatch: Any) -> None:
    monkeypatch.setenv("POD_NAME", "gpuplace-extender-abc")
    monkeypatch.setenv("POD_NAMESPACE", "gpu-ops")
    s = LeaderElectionSettings(enabled=True)
    assert (s.holder(), s.namespace()) == ("gpuplace-extender-abc", "gpu-ops")


def test_leadership_ends_renew_deadline_after_the_last_renewal_was_sent() -> None:
    """A stalled leader (SIGSTOP, GC pause) stops leading on its own clock, before any other replica
    may take the lease (lease_duration after it observed the renewal), whatever the election loop thinks."""
    clock = Clock()
    role = LeaseRole(LeaderElectionSettings(enabled=True, identity="a"), clock=clock)
    assert not role.is_leader()  # a candidate starts as a follower
    role.renewed(clock.now)
    assert role.is_leader() and role.describe() == "leader a"
    clock.now += RENEW_DEADLINE_SECONDS - 0.001
    assert role.is_leader()
    clock.now += 0.001
    assert not role.is_leader()
    assert clock.now < 1000.0 + LEASE_DURATION_SECONDS  # strictly before a follower could take over
    role.renewed(clock.now - 1)  # an answer that arrives late counts from when it was sent
    assert role.seconds_left() == pytest.approx(RENEW_DEADLINE_SECONDS - 1)


async def test_a_binder_refuses_to_write_once_leadership_ran_out() -> None:
    clock = Clock()
    role = LeaseRole(LeaderElectionSettings(enabled=True, identity="a"), clock=clock)
    inner = MemoryBinder()
    p, q = inner.add(o.pod("p", gpus=1, namespace="ns")), inner.add(o.pod("q", gpus=1, namespace="ns"))
    binder = LeaderBinder(inner, role)
    role.renewed(clock.now)
    await binder.bind("ns", "p", uid=p["metadata"]["uid"], node="h0", annotations={})
    assert inner.pods[("ns", "p")]["spec"]["nodeName"] == "h0"
    clock.now += RENEW_DEADLINE_SECONDS
    with pytest.raises(NotLeaderError) as refused:
        await binder.bind("ns", "q", uid=q["metadata"]["uid"], node="h0", annotations={})
    assert 0 < refused.value.status < 500  # definite: the Binding was never sent, bind rolls back
    assert not inner.pods[("ns", "q")]["spec"].get("nodeName")
    assert [c[0] for c in inner.calls] == ["bind"]


async def test_a_follower_closes_verb_connections_and_is_not_ready(
    aiohttp_client: Any, cluster: ExtenderContext
) -> None:
    clock = Clock()
    role = LeaseRole(
        LeaderElectionSettings(enabled=True, identity="b"), registry=cluster.metrics.registry, clock=clock
    )
    app = make_extender_app(cluster, role)
    attach_background(app, None)
    client = await aiohttp_client(app)
    args = {"Pod": o.pod("p", gpus=1), "Nodes": None, "NodeNames": ["h0", "h1"]}
    ready = await client.get("/readyz")
    assert ready.status == 503 and "follower b" in await ready.text()
    with pytest.raises(aiohttp.ServerDisconnectedError):  # closed, never answered
        await client.post("/scheduler/filter", data=io.BytesIO(orjson.dumps(args)))
    assert (await client.get("/healthz")).status == 200  # alive, so the kubelet does not restart it

    role.renewed(clock.now)

    # once leading, it first holds what a predecessor may still bind (scheduler.inflight)
    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, within=60, interval=0.01, what="the new leader to be ready")
    resp = await client.post("/scheduler/filter", data=io.BytesIO(orjson.dumps(args)))
    assert resp.status == 200 and (await resp.json())["NodeNames"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gpuplace_extender_not_leader_refusals_total{verb="filter"} 1.0' in metrics
    assert "gpuplace_extender_leader 1.0" in metrics


async def test_a_replica_stands_for_election_only_once_it_is_ready(monkeypatch: Any) -> None:
    """A cold replica must not take the Lease: it would lead while unable to answer (warm-up or relist)."""
    started = asyncio.Event()

    class Election:
        def __init__(self, config: Any) -> None:
            self.config = config

        async def run(self) -> None:
            started.set()
            await asyncio.Event().wait()

    monkeypatch.setattr(leader.leaderelection, "LeaderElection", Election)
    role = LeaseRole(LeaderElectionSettings(enabled=True, identity="a"))
    is_ready = False
    asked = asyncio.Event()
    polls = 0

    def ready() -> bool:
        nonlocal polls
        polls += 1
        if polls >= 3:
            asked.set()
        return is_ready

    api: Any = object()  # never called: the election above is a stand-in
    task = asyncio.create_task(campaign(api, role, ready=ready, poll=0.01))
    await asyncio.wait_for(asked.wait(), 30)  # asked three times, answered "not ready" each time
    assert not started.is_set()
    is_ready = True
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
