"""Reading the objects a pod belongs to (Job, JobSet, PyTorchJob, LeaderWorkerSet, RayCluster, PodGroups) and
the DRA objects its GPUs may come from (ResourceClaim, ResourceClaimTemplate, DeviceClass).

Why a protocol: the gang rule needs a few reads of the API, but the engine must stay testable without
one and must never fail a pod because the API is slow. `Owners` is that seam: `DictOwners` answers from
a dict (tests, benchmarks), `KubeOwners` answers from kube-apiserver through kubernetes_asyncio.

`KubeOwners` rules:
- A short TTL cache (default 5 s): a 64-pod gang, created in one burst, costs one read, not 64.
  Concurrent reads of the same object share one request.
- Entries belong to one object, identified by its UID: a `uid` (from the pod's ownerReference or a
  controller's uid label) that differs from the cached object's means the owner was deleted and re-created
  under the same name, and the cache is bypassed. `refresh=True` bypasses it too: the caller has seen
  that the object changed (a resized owner) and needs the current resourceVersion.
- Every failure (timeout, 403 without RBAC, 404 without the CRD, a broken connection) is "unknown":
  `None`, logged, cached briefly so a broken apiserver is not hammered. Nothing here raises.
- Only the kinds in `RESOURCES` are read: a plural is never guessed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from webhook.settings import WebhookSettings

log = logging.getLogger(__name__)

Object = dict[str, Any]
Key = tuple[str, str, str, str]

#: (API group, kind) → plural, for every kind the gang rule reads. RBAC: deploy/webhook/rbac.yaml.
RESOURCES: dict[tuple[str, str], str] = {
    ("batch", "Job"): "jobs",
    ("jobset.x-k8s.io", "JobSet"): "jobsets",
    ("kubeflow.org", "PyTorchJob"): "pytorchjobs",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkersets",
    ("ray.io", "RayCluster"): "rayclusters",
    ("scheduling.k8s.io", "PodGroup"): "podgroups",
    ("scheduling.volcano.sh", "PodGroup"): "podgroups",
    ("scheduling.x-k8s.io", "PodGroup"): "podgroups",
    # what a pod's GPUs through DRA are resolved from (webhook/dra.py)
    ("resource.k8s.io", "ResourceClaim"): "resourceclaims",
    ("resource.k8s.io", "ResourceClaimTemplate"): "resourceclaimtemplates",
    ("resource.k8s.io", "DeviceClass"): "deviceclasses",
}
#: Kinds without a namespace: read with namespace "" (DictOwners keys them so too).
CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset({("resource.k8s.io", "DeviceClass")})


class Owners(Protocol):
    """Read access to the objects a pod's gang size is derived from. Implementations never raise."""

    async def get_job(
        self, namespace: str, name: str, *, uid: str | None = None, refresh: bool = False
    ) -> Object | None:
        """The batch/v1 Job, or None when unknown (missing, unreadable, or not of this uid)."""
        ...

    async def get_owner(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        refresh: bool = False,
    ) -> Object | None:
        """Any object in RESOURCES, or None when unknown (missing, unreadable, or not of this uid).
        Cluster-scoped kinds (CLUSTER_SCOPED) are read with namespace "".

        `refresh`: the caller knows any cached copy is outdated; read the current object."""
        ...


def uid_of(obj: Object) -> str | None:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    return uid if isinstance(uid, str) and uid else None


def _matches(obj: Object | None, uid: str | None) -> bool:
    if obj is None or uid is None:
        return True
    found = uid_of(obj)
    return found is None or found == uid


class DictOwners:
    """Owners from a fixed set of objects, keyed by apiVersion, kind, namespace and name. Records calls
    (and, in `refreshes`, the calls made with refresh=True)."""

    def __init__(self, objects: Iterable[Object] = ()) -> None:
        self._objects: dict[Key, Object] = {}
        self.calls: list[Key] = []
        self.refreshes: list[Key] = []
        for obj in objects:
            self.add(obj)

    def add(self, obj: Object) -> None:
        meta = obj.get("metadata", {})
        group = obj["apiVersion"].rpartition("/")[0]
        default_namespace = "" if (group, obj["kind"]) in CLUSTER_SCOPED else "default"
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace", default_namespace), meta["name"])
        self._objects[key] = obj

    async def get_job(
        self, namespace: str, name: str, *, uid: str | None = None, refresh: bool = False
    ) -> Object | None:
        return await self.get_owner("batch/v1", "Job", namespace, name, uid=uid, refresh=refresh)

    async def get_owner(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        refresh: bool = False,
    ) -> Object | None:
        key = (api_version, kind, namespace, name)
        self.calls.append(key)
        if refresh:
            self.refreshes.append(key)
        obj = self._objects.get(key)
        return obj if obj is not None and _matches(obj, uid) else None


class KubeOwners:
    """Owners read from kube-apiserver with a TTL cache. See the module docstring for the rules."""

    def __init__(
        self,
        *,
        api_client: ApiClient,
        ttl_seconds: float = 5.0,
        timeout_seconds: float = 1.5,
        missing_ttl_seconds: float = 5.0,
        error_ttl_seconds: float = 2.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = CustomObjectsApi(api_client)
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._missing_ttl = missing_ttl_seconds
        self._error_ttl = error_ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[Key, tuple[float, Object | None]] = {}
        self._inflight: dict[Key, asyncio.Task[Object | None]] = {}
        self.requests = 0  # API requests made, for tests and debugging

    @classmethod
    def from_settings(cls, *, api_client: ApiClient, settings: WebhookSettings) -> KubeOwners:
        """The reader the webhook settings describe (cache TTL, lookup timeout)."""
        return cls(
            api_client=api_client,
            ttl_seconds=settings.owner_cache_ttl_seconds,
            timeout_seconds=settings.owner_lookup_timeout_seconds,
        )

    async def get_job(
        self, namespace: str, name: str, *, uid: str | None = None, refresh: bool = False
    ) -> Object | None:
        return await self.get_owner("batch/v1", "Job", namespace, name, uid=uid, refresh=refresh)

    async def get_owner(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        refresh: bool = False,
    ) -> Object | None:
        key = (api_version, kind, namespace, name)
        cached = None if refresh else self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            obj = cached[1]
            if uid is None or (obj is not None and _matches(obj, uid)):
                return obj
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key), name=f"gpuplace-owner-{kind}-{namespace}/{name}")
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: a cancelled admission request must not cancel a read other requests wait for.
        obj = await asyncio.shield(task)
        return obj if _matches(obj, uid) else None

    async def _fetch(self, key: Key) -> Object | None:
        api_version, kind, namespace, name = key
        group, _, version = api_version.rpartition("/")
        plural = RESOURCES.get((group, kind))
        if plural is None:
            log.warning("gpuplace does not read %s %s: not a known owner kind", api_version, kind)
            self._store(key, None, self._missing_ttl)
            return None
        self.requests += 1
        try:
            async with asyncio.timeout(self._timeout):
                if namespace:
                    obj = await self._api.get_namespaced_custom_object(
                        group, version, namespace, plural, name, _request_timeout=self._timeout
                    )
                else:
                    obj = await self._api.get_cluster_custom_object(
                        group, version, plural, name, _request_timeout=self._timeout
                    )
        except ApiException as exc:
            if exc.status == 404:
                self._store(key, None, self._missing_ttl)
                return None
            log.warning("reading %s %s/%s failed: HTTP %s %s", kind, namespace, name, exc.status, exc.reason)
        except TimeoutError:
            log.warning("reading %s %s/%s timed out after %.1f s", kind, namespace, name, self._timeout)
        except Exception as exc:  # never crash an admission on a read
            log.warning("reading %s %s/%s failed: %r", kind, namespace, name, exc)
        else:
            if isinstance(obj, dict):
                self._store(key, obj, self._ttl)
                return obj
            log.warning(
                "reading %s %s/%s returned %s, not an object", kind, namespace, name, type(obj).__name__
            )
        self._store(key, None, self._error_ttl)
        return None

    def _store(self, key: Key, obj: Object | None, ttl: float) -> None:
        now = self._clock()
        self._cache.pop(key, None)
        self._cache[key] = (now + ttl, obj)
        if len(self._cache) > self._max_entries:
            for stale in [k for k, (expiry, _) in self._cache.items() if expiry <= now]:
                del self._cache[stale]
            while len(self._cache) > self._max_entries:
                del self._cache[next(iter(self._cache))]
