"""Gang plans and where they are kept: one ConfigMap per planned gang, in the gang's namespace.

Why the API server: a plan is the commit point of a gang (which member goes to which node and GPUs).
Reservations are rebuilt from plans, never stored; pods carry only a nudge annotation. After a restart
(or a SIGKILL mid-binding) gpuplace reloads the live plans before it reports ready, so members already
bound and members still pending keep one placement and capacity is never promised twice.

The ConfigMap: name `gpuplace-gang-<sha1 of the gang name>` (gang names may hold `_`, which object names
may not), label `gpuplace.io/gang-plan: v1`, data key `plan` = the JSON below.

Writes are compare-and-set on the ConfigMap's resourceVersion, as client-go's optimistic concurrency
does it (an update carrying `metadata.resourceVersion` fails 409 Conflict if anyone wrote since; a
delete carries it as `preconditions.resourceVersion`). A plan remembers the resourceVersion of its last
write. Only the leader writes (scheduler.gang.manager), so a conflict means another replica wrote since
(a leader that lost its lease and did not know yet) or a person edited the object: the writer gets
`PlanConflictError` with the stored plan and gives its own up (it never overwrites one it did not read). A
create that finds the object already there, or an update whose answer was lost, re-reads: an object
holding the same plan uid is this writer's own earlier write, and the write is retried on its version.

    {"v": 1, "namespace": "ml", "gang": "train", "uid": "…", "epoch": 3, "minMember": 4,
     "level": "clique", "domain": "<label value>", "created": <unix s>, "expires": <unix s>,
     "assignments": {"<pod uid>": {"pod": "train-0", "node": "gpu-1", "gpus": [0, 1], "milli": 1000,
                                   "mig": [], "cpu": 1000, "mem": 4096}}}
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from placement_core import Placement
from placement_core.gangplan import Level

log = logging.getLogger("gpuplace.scheduler.gang")
PLAN_LABEL = "gpuplace.io/gang-plan"
TIMEOUT = 10.0  # seconds per API call; a failed save is retried (scheduler.gang.manager._save)


class PlanError(ValueError):
    pass


class PlanConflictError(Exception):
    """The stored object is not this plan's last write: someone else wrote it (`current`, None = gone)."""

    def __init__(self, key: tuple[str, str], current: Plan | None) -> None:
        what = f"plan {current.uid}/{current.epoch}" if current is not None else "nothing"
        super().__init__(f"gang plan {key[0]}/{key[1]}: the store holds {what}, written by someone else")
        self.current = current


@dataclass
class Plan:
    namespace: str
    gang: str
    uid: str
    epoch: int
    min_member: int
    level: Level
    domain: str  # the label value at `level` ("" for the cluster)
    created: float
    expires: float
    assignments: dict[str, Placement]
    pods: dict[str, str]  # pod uid → pod name
    arrived: set[str] = field(default_factory=set)  # members waiting at the bind barrier
    answered: set[str] = field(default_factory=set)  # passed by filter, no bind call since
    dropped: int = 0  # filters of members in `answered`: attempts kube-scheduler dropped after filter
    saved: bool = False
    resource_version: str = ""  # of the ConfigMap after this plan's last write ("" = never written)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.gang

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "namespace": self.namespace,
                "gang": self.gang,
                "uid": self.uid,
                "epoch": self.epoch,
                "minMember": self.min_member,
                "level": self.level.name.lower(),
                "domain": self.domain,
                "created": self.created,
                "expires": self.expires,
                "assignments": {
                    uid: {
                        "pod": self.pods.get(uid, ""),
                        "node": p.node,
                        "gpus": list(p.gpus),
                        "milli": p.milli,
                        "mig": [list(m) for m in p.mig],
                        "cpu": p.cpu_milli,
                        "mem": p.memory_mib,
                    }
                    for uid, p in self.assignments.items()
                },
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Plan:
        try:
            d = orjson.loads(raw)
            if d.get("v") != 1:
                raise PlanError(f"unknown plan version {d.get('v')!r}")
            assignments, pods = {}, {}
            for uid, a in d["assignments"].items():
                assignments[uid] = Placement(
                    node=str(a["node"]),
                    gpus=tuple(int(g) for g in a["gpus"]),
                    milli=int(a["milli"]),
                    mig=tuple((int(g), int(k)) for g, k in a["mig"]),
                    cpu_milli=int(a["cpu"]),
                    memory_mib=int(a["mem"]),
                )
                pods[uid] = str(a["pod"])
            return cls(
                str(d["namespace"]),
                str(d["gang"]),
                str(d["uid"]),
                int(d["epoch"]),
                int(d["minMember"]),
                Level[str(d["level"]).upper()],
                str(d["domain"]),
                float(d["created"]),
                float(d["expires"]),
                assignments,
                pods,
                saved=True,
            )
        except PlanError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise PlanError(f"unreadable gang plan: {e!r}") from None


def configmap_name(gang: str) -> str:
    return "gpuplace-gang-" + hashlib.sha1(gang.encode()).hexdigest()[:20]


class PlanStore(Protocol):
    async def save(self, plan: Plan) -> None:
        """Write `plan` compare-and-set, then set `plan.resource_version`. Raises PlanConflictError."""
        ...

    async def delete(self, plan: Plan) -> None:
        """Delete `plan`'s object if it is still this plan's last write (else leave it: PlanConflictError).
        Gone already is success."""
        ...

    async def load(self) -> list[Plan]:
        """Every stored plan, each with its object's resourceVersion."""
        ...


class MemoryPlanStore:
    """Plans in a dict with the API server's compare-and-set (tests; `scheduler.gang.store: memory`).
    `objects` plays the API server: key → (resourceVersion, JSON)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.writes = 0
        self._rv = 0

    def _next(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _current(self, key: tuple[str, str]) -> Plan | None:
        got = self.objects.get(key)
        return _with_rv(Plan.from_json(got[1]), got[0]) if got else None

    def put(self, plan: Plan) -> None:
        """Someone else's write (tests): store `plan` whatever is there."""
        self.objects[plan.key] = (self._next(), plan.to_json())

    async def save(self, plan: Plan) -> None:
        self.writes += 1
        got = self.objects.get(plan.key)
        if got is not None and got[0] != plan.resource_version:
            current = self._current(plan.key)
            if current is None or current.uid != plan.uid:
                raise PlanConflictError(plan.key, current)
        elif got is None and plan.resource_version:
            raise PlanConflictError(plan.key, None)
        rv = self._next()
        self.objects[plan.key] = (rv, plan.to_json())
        plan.resource_version = rv

    async def delete(self, plan: Plan) -> None:
        got = self.objects.get(plan.key)
        if got is None:
            return
        if got[0] != plan.resource_version:
            current = self._current(plan.key)
            if plan.resource_version or current is None or current.uid != plan.uid:
                raise PlanConflictError(plan.key, current)
        del self.objects[plan.key]

    async def load(self) -> list[Plan]:
        return [_with_rv(Plan.from_json(v), rv) for rv, v in self.objects.values()]


def _with_rv(plan: Plan, rv: str) -> Plan:
    plan.resource_version = rv
    return plan


class KubePlanStore:
    """Plans as ConfigMaps (RBAC: configmaps get/list/create/update/delete, deploy/scheduler/rbac.yaml)."""

    def __init__(self, api: Any) -> None:
        from kubernetes_asyncio import client

        self.core = client.CoreV1Api(api)
        self._exc = client.exceptions.ApiException

    def _body(self, plan: Plan) -> Any:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": configmap_name(plan.gang),
                "namespace": plan.namespace,
                "labels": {PLAN_LABEL: "v1"},
                "annotations": {"gpuplace.io/gang": plan.gang},
            },
            "data": {"plan": plan.to_json().decode()},
        }

    def _call(self, coro: Any) -> Any:
        return asyncio.wait_for(coro, TIMEOUT)

    async def _read(self, plan: Plan) -> tuple[str, Plan | None] | None:
        """(resourceVersion, the stored plan or None if unreadable), or None when there is no object."""
        try:
            cm = await self._call(
                self.core.read_namespaced_config_map(configmap_name(plan.gang), plan.namespace)
            )
        except self._exc as e:
            if e.status == 404:
                return None
            raise
        try:
            stored: Plan | None = Plan.from_json(((cm.data or {}).get("plan")) or "")
        except PlanError:
            stored = None
        return str(cm.metadata.resource_version), stored

    async def save(self, plan: Plan) -> None:
        for _ in range(3):  # an own earlier write found in the way is adopted, then retried
            body = self._body(plan)
            try:
                if not plan.resource_version:
                    cm = await self._call(self.core.create_namespaced_config_map(plan.namespace, body))
                else:
                    body["metadata"]["resourceVersion"] = plan.resource_version
                    cm = await self._call(
                        self.core.replace_namespaced_config_map(
                            configmap_name(plan.gang), plan.namespace, body
                        )
                    )
                plan.resource_version = str(cm.metadata.resource_version)
                return
            except self._exc as e:
                if e.status not in (404, 409):
                    raise
            found = await self._read(plan)
            if found is None:
                if plan.resource_version:  # it was written, then deleted by someone else
                    raise PlanConflictError(plan.key, None)
                continue
            rv, stored = found
            if stored is not None and stored.uid == plan.uid:
                plan.resource_version = rv  # our own write (its answer lost, or a create that raced)
                continue
            raise PlanConflictError(plan.key, _with_rv(stored, rv) if stored else None)
        raise PlanConflictError(plan.key, None)

    async def delete(self, plan: Plan) -> None:
        from kubernetes_asyncio import client

        rv = plan.resource_version
        if not rv:  # its save's answer was lost (or it never ran): delete it only if it is this plan
            found = await self._read(plan)
            if found is None:
                return
            if found[1] is None or found[1].uid != plan.uid:
                raise PlanConflictError(plan.key, _with_rv(found[1], found[0]) if found[1] else None)
            rv = found[0]
        opts = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=rv))
        try:
            await self._call(
                self.core.delete_namespaced_config_map(configmap_name(plan.gang), plan.namespace, body=opts)
            )
        except self._exc as e:
            if e.status == 404:
                return
            if e.status == 409:
                found = await self._read(plan)
                raise PlanConflictError(plan.key, found[1] if found else None) from None
            raise

    async def load(self) -> list[Plan]:
        resp: Any = await self.core.list_config_map_for_all_namespaces(
            label_selector=f"{PLAN_LABEL}=v1", _preload_content=False
        )
        items = orjson.loads(await resp.read()).get("items") or []
        out = []
        for item in items:
            raw = (item.get("data") or {}).get("plan")
            meta = item.get("metadata") or {}
            try:
                out.append(_with_rv(Plan.from_json(raw or ""), str(meta.get("resourceVersion") or "")))
            except PlanError as e:
                log.warning("ignoring ConfigMap %s/%s: %s", meta.get("namespace"), meta.get("name"), e)
        return out
