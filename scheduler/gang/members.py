"""The gangs gpuplace knows and their members, fed by the pod watch (and by filter, which may see a pod
before the watch does). A member is a GPU pod carrying a gang key (scheduler.gang.identity); it is
pending until the watch shows it bound. Members leave on deletion or when they finish."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from placement_core import GpuRequest
from scheduler.gang.identity import (
    KUEUE_NAME,
    PLUGINS_NAME,
    VOLCANO_NAME,
    GangId,
    GangIdentityError,
    gang_of,
    resolve,
)
from scheduler.gang.podgroups import PodGroupCache, Ref
from scheduler.podreq import PodRequestError, Rules, pod_request
from scheduler.settings import GangSettings
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.gang")
TERMINAL = ("Succeeded", "Failed")


@dataclass
class Member:
    uid: str
    name: str
    created: str
    priority: int
    node: str  # "" while pending
    req: GpuRequest


@dataclass
class Gang:
    id: GangId
    members: dict[str, Member] = field(default_factory=dict)
    epoch: int = 0
    backoff_until: float = 0.0
    waiting_since: float = 0.0  # when quorum was first seen without a plan (metrics)

    @property
    def bound(self) -> list[Member]:
        return [m for m in self.members.values() if m.node]

    @property
    def pending(self) -> list[Member]:
        return [m for m in self.members.values() if not m.node]

    def order(self) -> tuple[int, str, str]:
        """Competing gangs: higher priority first, then the older (earliest member), then the name."""
        prio = max((m.priority for m in self.members.values()), default=0)
        oldest = min((m.created for m in self.members.values()), default="")
        return -prio, oldest, str(self.id)


class Registry:
    def __init__(self, settings: GangSettings, rules: Rules, podgroups: PodGroupCache | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.podgroups = podgroups
        self.gangs: dict[tuple[str, str], Gang] = {}
        self.of_pod: dict[str, tuple[str, str]] = {}  # pod uid → gang key

    def _maybe_member(self, raw: dict[str, Any]) -> bool:
        meta = raw.get("metadata") or {}
        labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
        s = self.settings
        return bool(
            labels.get(s.label)
            or labels.get(KUEUE_NAME)
            or labels.get(PLUGINS_NAME)
            or ann.get(VOLCANO_NAME)
            or ((raw.get("spec") or {}).get("schedulingGroup") or {}).get("podGroupName")
        )

    def observe(self, etype: str, raw: dict[str, Any]) -> tuple[str, Member | None, str]:
        """Apply a watch event. Returns (pod uid, the member or None when it left, its previous node)."""
        uid = str((raw.get("metadata") or {}).get("uid") or "")
        if not uid:
            return "", None, ""
        gone = etype == "DELETED" or (raw.get("status") or {}).get("phase") in TERMINAL
        if gone or not self._maybe_member(raw):
            return uid, None, self.forget(uid)
        pod = Pod.model_validate(raw)
        return uid, *self.admit(pod)

    def admit(self, pod: Pod, req: GpuRequest | None = None) -> tuple[Member | None, str]:
        """Register `pod` as a member (idempotent); (member or None, its previous node)."""
        uid = pod.metadata.uid
        try:
            gid = gang_of(pod, self.settings, self.podgroups)
            if gid is not None and req is None:
                req = pod_request(pod, self.rules)
        except (GangIdentityError, PodRequestError) as e:
            log.debug("pod %s: %s", pod.key, e)
            gid = None
        if gid is None or req is None or (req.count == 0 and not req.mig_profile):
            return None, self.forget(uid)
        old_key = self.of_pod.get(uid)
        prev = ""
        if old_key is not None and old_key != gid.key:
            prev = self.forget(uid)
        gang = self.gangs.get(gid.key)
        if gang is None:
            gang = self.gangs[gid.key] = Gang(gid)
        elif gang.id != gid:
            gang.id = gid  # the newest member's view of the size and topology wins
        old = gang.members.get(uid)
        prev = old.node if old is not None else prev
        m = Member(
            uid,
            pod.metadata.name,
            pod.metadata.creation_timestamp,
            pod.spec.priority,
            pod.spec.node_name,
            req,
        )
        gang.members[uid] = m
        self.of_pod[uid] = gid.key
        return m, prev

    def forget(self, uid: str) -> str:
        """Drop a member; its node ("" if it was pending or unknown)."""
        key = self.of_pod.pop(uid, None)
        if key is None:
            return ""
        gang = self.gangs.get(key)
        m = gang.members.pop(uid, None) if gang is not None else None
        if gang is not None and not gang.members:
            del self.gangs[key]
        return m.node if m is not None else ""

    def refresh(self, refs: set[Ref]) -> tuple[list[tuple[str, str]], list[str]]:
        """Re-resolve the gangs that name any of `refs`: (their keys, members that are no gang now)."""
        keys, dropped = [], []
        for key, gang in list(self.gangs.items()):
            if not refs.intersection(gang.id.podgroups):
                continue
            gid = resolve(gang.id, self.podgroups)
            if gid is None:  # a v1alpha2 PodGroup with the basic policy: its pods are placed alone
                for uid in list(gang.members):
                    self.forget(uid)
                    dropped.append(uid)
                continue
            gang.id = gid
            keys.append(key)
        return keys, dropped

    def gang_of_pod(self, uid: str) -> Gang | None:
        key = self.of_pod.get(uid)
        return self.gangs.get(key) if key is not None else None
