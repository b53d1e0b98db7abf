"""Gang plans and where they are kept: one ConfigMap per planned gang, in the gang's namespace.

Why the API server: a plan is the commit point of a gang (which member goes to which node and GPUs).
Reservations are rebuilt from plans, never stored; pods carry only a nudge annotation. After a restart
(or a SIGKILL mid-binding) gpuplace reloads the live plans before it reports ready, so members already
bound and members still pending keep one placement and capacity is never promised twice.

The ConfigMap: name `gpuplace-gang-<sha1 of the gang name>` (gang names may hold `_`, which object names
may not), label `gpuplace.io/gang-plan: v1`, data key `plan` = the JSON below. One writer (the leader),
so a plain create-or-replace; the plan's `epoch` says which plan a reader holds.

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
    saved: bool = False

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
    async def save(self, plan: Plan) -> None: ...

    async def delete(self, namespace: str, gang: str) -> None: ...

    async def load(self) -> list[Plan]: ...


class MemoryPlanStore:
    """Plans in a dict (tests; `scheduler.gang.store: memory`). `objects` plays the API server."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes = 0

    async def save(self, plan: Plan) -> None:
        self.writes += 1
        self.objects[plan.key] = plan.to_json()

    async def delete(self, namespace: str, gang: str) -> None:
        self.objects.pop((namespace, gang), None)

    async def load(self) -> list[Plan]:
        return [Plan.from_json(v) for v in self.objects.values()]


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

    async def save(self, plan: Plan) -> None:
        body = self._body(plan)
        try:
            await asyncio.wait_for(self.core.create_namespaced_config_map(plan.namespace, body), TIMEOUT)
        except self._exc as e:
            if e.status != 409:
                raise
            await asyncio.wait_for(
                self.core.replace_namespaced_config_map(configmap_name(plan.gang), plan.namespace, body),
                TIMEOUT,
            )

    async def delete(self, namespace: str, gang: str) -> None:
        try:
            await asyncio.wait_for(
                self.core.delete_namespaced_config_map(configmap_name(gang), namespace), TIMEOUT
            )
        except self._exc as e:
            if e.status != 404:
                raise

    async def load(self) -> list[Plan]:
        resp: Any = await self.core.list_config_map_for_all_namespaces(
            label_selector=f"{PLAN_LABEL}=v1", _preload_content=False
        )
        items = orjson.loads(await resp.read()).get("items") or []
        out = []
        for item in items:
            raw = (item.get("data") or {}).get("plan")
            try:
                out.append(Plan.from_json(raw or ""))
            except PlanError as e:
                meta = item.get("metadata") or {}
                log.warning("ignoring ConfigMap %s/%s: %s", meta.get("namespace"), meta.get("name"), e)
        return out
