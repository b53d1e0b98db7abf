"""Leader election for the extender replicas: one Lease, one leader answering the verbs.

Why: kube-scheduler assumes a pod and moves on before bind returns, and gpuplace keeps in-flight GPU
reservations in memory, so two replicas binding at once could book one GPU twice. Every replica runs
the informers and warms its kernels (a follower takes over with a warm cache); only the leader answers
filter/prioritize/bind/preempt and reports Ready, so the Service routes kube-scheduler to it alone.

The timings live here, once (Kueue's defaults, as client-go's leader election recommends them):
a 15 s lease, a 10 s renew deadline, 2 s between tries. A follower takes over at most
`lease_duration` after the leader's last renewal (plus one retry period).

Safety does not rest on the election loop noticing a loss. kubernetes_asyncio's `LeaderElection`
(like client-go's) keeps believing it leads until its renew loop gives up, which after a SIGSTOP or
a long GC pause can be well after another replica took the lease. `LeaseRole.is_leader()` is
therefore computed at the moment of each call from the monotonic clock: leadership holds only until
`renew_deadline` after the start of the last successful renewal, strictly before any other candidate
may take the lease (it waits `lease_duration` from when it observed that renewal). Once that passes,
the replica refuses every verb (closing the connection) and stops the process, as kube-scheduler
does when it loses its lease (cmd/kube-scheduler/app/server.go, `OnStoppedLeading` exits), so it
comes back as a clean follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.binder import ApiError, Binder

log = logging.getLogger("gpuplace.scheduler.leader")

LEASE_DURATION_SECONDS = 15  # whole seconds: Lease.spec.leaseDurationSeconds is an integer
RENEW_DEADLINE_SECONDS = 10.0
RETRY_PERIOD_SECONDS = 2.0
_JITTER = 1.2  # kubernetes_asyncio's electionconfig.Config.jitter_factor: renew_deadline > 1.2 × retry


class LeaderElectionSettings(BaseModel):
    """The `leader_election:` section of gpuplace's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Elect a leader among extender replicas.")
    lease_name: str = "gpuplace-extender"
    lease_namespace: str | None = Field(
        default=None, description="Default: $POD_NAMESPACE, else gpuplace-system."
    )
    identity: str | None = Field(default=None, description="Default: $POD_NAME, else <hostname>-<pid>.")
    lease_duration_seconds: int = LEASE_DURATION_SECONDS
    renew_deadline_seconds: float = RENEW_DEADLINE_SECONDS
    retry_period_seconds: float = RETRY_PERIOD_SECONDS

    @model_validator(mode="after")
    def _timings(self) -> LeaderElectionSettings:
        lease, renew, retry = (
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds,
        )
        if min(lease, renew, retry) < 1:
            raise ValueError(
                "lease_duration_seconds, renew_deadline_seconds and retry_period_seconds must be >= 1"
            )
        if not lease > renew > _JITTER * retry:
            raise ValueError(
                f"need lease_duration_seconds > renew_deadline_seconds > {_JITTER} x retry_period_seconds "
                f"(got {lease}, {renew}, {retry})"
            )
        return self

    def namespace(self) -> str:
        return self.lease_namespace or os.environ.get("POD_NAMESPACE") or "gpuplace-system"

    def holder(self) -> str:
        return self.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class Role(Protocol):
    """What a request handler may ask: may this replica answer the verbs right now?"""

    def is_leader(self) -> bool: ...

    def describe(self) -> str: ...

    def refused(self, verb: str) -> None:
        """Count a verb call this replica refused because it does not lead."""
        ...


class Standalone:
    """Leader election disabled: the only replica always leads (tests, single-replica installs)."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        if registry is not None:  # the same gauge as LeaseRole's, always 1: alerts read one metric
            Gauge(
                "gpuplace_extender_leader", "1 while this replica holds the extender Lease", registry=registry
            ).set(1)

    def is_leader(self) -> bool:
        return True

    def describe(self) -> str:
        return "standalone"

    def refused(self, verb: str) -> None:
        return None


class LeaseRole:
    """Leadership as a deadline on the monotonic clock, moved forward by each successful renewal."""

    def __init__(
        self,
        settings: LeaderElectionSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.identity = settings.holder()
        self._clock = clock
        self._valid_until = float("-inf")
        self.leader: str | None = None  # the holder last observed (for /readyz and logs)
        registry = registry or CollectorRegistry()
        Gauge(
            "gpuplace_extender_leader", "1 while this replica holds the extender Lease", registry=registry
        ).set_function(lambda: float(self.is_leader()))
        self._refusals = Counter(
            "gpuplace_extender_not_leader_refusals",
            "Verb calls refused (connection closed) because this replica does not lead",
            ["verb"],
            registry=registry,
        )

    def refused(self, verb: str) -> None:
        self._refusals.labels(verb).inc()

    def is_leader(self) -> bool:
        return self._clock() < self._valid_until

    def renewed(self, started_at: float) -> None:
        """A create/update of the Lease naming us, sent at `started_at`, succeeded."""
        self._valid_until = max(self._valid_until, started_at + self.settings.renew_deadline_seconds)
        self.leader = self.identity

    def seconds_left(self) -> float:
        return self._valid_until - self._clock()

    def describe(self) -> str:
        if self.is_leader():
            return f"leader {self.identity}"
        return f"follower {self.identity} (leader: {self.leader or 'unknown'})"


class _TrackedLeaseLock(LeaseLock):
    """kubernetes_asyncio's LeaseLock (replace with resourceVersion: a stale holder's renewal fails with a
    conflict) that reports each successful write of our own record to the role."""

    def __init__(self, role: LeaseRole, api: ApiClient) -> None:
        s = role.settings
        super().__init__(s.lease_name, s.namespace(), role.identity, api)
        self.role = role

    async def get(self, name: str, namespace: str) -> Any:
        found, record = await super().get(name, namespace)
        if found and isinstance(record, LeaderElectionRecord):
            self.role.leader = record.holder_identity
        return found, record

    async def create(self, name: str, namespace: str, election_record: LeaderElectionRecord) -> bool:
        started = self.role._clock()
        ok: bool = await super().create(name, namespace, election_record)
        if ok:
            self.role.renewed(started)
        return ok

    async def update(self, name: str, namespace: str, updated_record: LeaderElectionRecord) -> bool:
        started = self.role._clock()
        ok: bool = await super().update(name, namespace, updated_record)
        if ok and updated_record.holder_identity == self.identity:
            self.role.renewed(started)
        return ok


async def campaign(
    api: ApiClient, role: LeaseRole, *, ready: Callable[[], bool] = lambda: True, poll: float = 0.1
) -> None:
    """Run for the Lease until leadership, once won, is lost; then return (the caller stops the process).

    A replica stands for election only once `ready()` holds (cache synced, kernels warm), as
    kube-scheduler starts its informers and waits for their sync before it runs its leader elector
    (cmd/kube-scheduler/app/server.go, `Run`): a leader that cannot answer yet would hold the lease
    while a warm follower waits, and a cold one may compile for a minute on a loaded machine.

    Returns when `role.is_leader()` turns false after having been true — whichever comes first of the
    library's renew loop giving up and the deadline passing (the watchdog below)."""
    s = role.settings
    while not ready():  # noqa: ASYNC110 -- polled: readiness is the conjunction of several watches and warm-up
        await asyncio.sleep(poll)
    won = asyncio.Event()

    async def leading() -> None:
        won.set()
        log.info("%s acquired lease %s/%s", role.identity, s.namespace(), s.lease_name)
        await asyncio.Event().wait()

    async def stopped() -> None:
        log.warning("%s: lease %s renewal failed", role.identity, s.lease_name)

    config = electionconfig.Config(
        _TrackedLeaseLock(role, api),
        lease_duration=s.lease_duration_seconds,
        renew_deadline=s.renew_deadline_seconds,
        retry_period=s.retry_period_seconds,
        onstarted_leading=leading,
        onstopped_leading=stopped,
    )
    election = asyncio.create_task(leaderelection.LeaderElection(config).run(), name="leader-election")
    winning = asyncio.create_task(won.wait())
    try:
        await asyncio.wait([election, winning], return_when=asyncio.FIRST_COMPLETED)
        if not won.is_set():  # the election loop ended without ever winning: a bug or a crash, say which
            raise RuntimeError(f"leader election for lease {s.lease_name} ended: {election.exception()!r}")
        while not election.done():
            left = role.seconds_left()
            if left <= 0:
                break
            await asyncio.wait([election], timeout=min(left, s.retry_period_seconds))
    finally:
        for task in (election, winning):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    log.error("%s lost lease %s/%s", role.identity, s.namespace(), s.lease_name)


class NotLeaderError(ApiError):
    """This replica is not (or no longer) the leader, so the Binding was never sent (status 412: a definite
    failure, so bind rolls its reservation back)."""


class LeaderBinder:
    """A Binder that refuses to write unless `role.is_leader()` holds at the moment of the call."""

    def __init__(self, inner: Binder, role: Role) -> None:
        self.inner = inner
        self.role = role

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.inner.get_pod(namespace, name)

    async def pending_pods(self) -> list[dict[str, Any]]:
        return await self.inner.pending_pods()

    async def annotate_pod(self, namespace: str, name: str, *, uid: str, annotations: dict[str, str]) -> None:
        """Bind's intent, written just before its Binding: refused like the Binding itself."""
        if not self.role.is_leader():
            raise NotLeaderError(412, f"gpuplace replica is not the leader ({self.role.describe()})")
        await self.inner.annotate_pod(namespace, name, uid=uid, annotations=annotations)

    async def bind(
        self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        if not self.role.is_leader():
            raise NotLeaderError(412, f"gpuplace replica is not the leader ({self.role.describe()})")
        await self.inner.bind(namespace, name, uid=uid, node=node, annotations=annotations)

    async def patch_pod_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """The gang manager's nudges: only the leader nudges (a follower's would be duplicates)."""
        patch = getattr(self.inner, "patch_pod_annotations", None)
        if patch is not None and self.role.is_leader():
            await patch(namespace, name, annotations)
