"""The real Kubernetes side: an API client, the raw list/watch source, and the binder.

All calls go through kubernetes_asyncio's generated functions (auth, TLS, proxies, exec plugins from the
kubeconfig) with `_preload_content=False`: we take the raw JSON and parse it with orjson, skipping the
generated model classes — faster, and it sidesteps the client's known failure to deserialise the
pods/binding response (a Status where a V1Binding is expected).

The Binding is one write: a pods/binding whose metadata carries the pod's UID and gpuplace's annotations
(bind writes its intent annotation just before it, `annotate_pod`; scheduler/inflight.py says why).
kube-apiserver (v1.36 `BindingREST.setPodNodeAndMetadata`) takes the Binding's metadata.uid (and
resourceVersion, if set) as preconditions of a single etcd update that sets spec.nodeName and merges
the Binding's annotations into the pod: a pod re-created under the same name is never bound, nor
annotated, with a placement meant for its predecessor (409), and the placement record exists on a pod
exactly when the pod is bound. No resourceVersion is sent, as kube-scheduler's DefaultBinder sends
none: the server refuses an already-assigned pod by itself, and any unrelated write to the pending pod
(a status condition, a label) would otherwise fail the bind.

The Binding carries `?timeout=`, as client-go's `Request.Timeout` does: kube-apiserver then works on
it for at most that long (v1.36 staging/src/k8s.io/apiserver/pkg/endpoints/filters/request_deadline.go,
`withRequestDeadline`: the deadline is the smaller of the request's `timeout` and --request-timeout,
counted from the request's arrival). That bounds how late a Binding whose answer was lost can still
commit, which is how long bind keeps its GPUs reserved (scheduler.verbs.bind).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from scheduler.binder import ApiError, NotSentError, api_error
from scheduler.watch import GoneError


async def make_api_client(kubeconfig: Path | None, context: str | None = None) -> client.ApiClient:
    """A client from `kubeconfig`, else the in-cluster service account, else ~/.kube/config."""
    cfg = client.Configuration()
    if kubeconfig is not None:
        await config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=cfg)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(context=context, client_configuration=cfg)
    api = client.ApiClient(configuration=cfg)
    _skip_env_lookups(api)
    return api


_PROXY_VARS = {f"{scheme}_proxy" for scheme in ("http", "https", "ws", "wss", "all")}


def _skip_env_lookups(api: client.ApiClient) -> None:
    """Give the client a session without `trust_env` when the environment has nothing to trust.

    kubernetes_asyncio opens its aiohttp session with `trust_env=True`; aiohttp then, for *every*
    request, reads the proxy variables and stats/parses ~/.netrc in a worker thread (two thread hops
    per call — a third of the Python CPU of a bind in the kube-scheduler benchmark). Without proxy
    variables and without a netrc file those lookups can only come back empty, so skipping them changes
    nothing. A proxy from the kubeconfig (`proxy-url`) is passed per request and keeps working.
    """
    if any(k.lower() in _PROXY_VARS for k in os.environ):
        return
    netrc = os.environ.get("NETRC")
    if netrc is not None or Path.home().joinpath(".netrc").exists():
        return
    rest = api.rest_client
    old = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=old.connector,
        trust_env=False,
        read_bufsize=2**21,  # as kubernetes_asyncio sets it
    )
    old.detach()  # the connector (and its pooled connections) now belongs to the new session


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        data = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status < 300:
        try:
            message = orjson.loads(data).get("message", "")
        except (orjson.JSONDecodeError, AttributeError):
            message = data[:200].decode(errors="replace")
        if resp.status == 410:
            raise GoneError(message)
        raise api_error(resp.status, message)
    return orjson.loads(data) if data else None


def _wrap(e: ApiException) -> Exception:
    if e.status == 410:
        return GoneError(str(e.reason))
    return api_error(int(e.status or 0), str(e.reason))


class KubeSource:
    """Raw LIST pages and WATCH streams of nodes, pods, PodDisruptionBudgets, ResourceSlices and
    ResourceClaims (resource.k8s.io/v1) and PodGroups (all namespaces). A PodGroup kind is
    `podgroups.<group>/<version>` (scheduler.gang.podgroups.KINDS)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.resource = client.ResourceV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _fn(self, kind: str) -> Any:
        if kind == "poddisruptionbudgets":
            return self.policy.list_pod_disruption_budget_for_all_namespaces
        if kind == "resourceslices":
            return self.resource.list_resource_slice
        if kind == "resourceclaims":
            return self.resource.list_resource_claim_for_all_namespaces
        if kind.startswith("podgroups."):
            group, version = kind.removeprefix("podgroups.").split("/")
            return functools.partial(self.custom.list_cluster_custom_object, group, version, "podgroups")
        return self.core.list_node if kind == "nodes" else self.core.list_pod_for_all_namespaces

    async def list(self, kind: str, *, limit: int, continue_token: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"limit": limit, "_preload_content": False}
        if continue_token:
            kw["_continue"] = continue_token
        try:
            resp = await self._fn(kind)(**kw)
        except ApiException as e:
            raise _wrap(e) from None
        out: dict[str, Any] = await _json(resp)
        return out

    async def watch(
        self, kind: str, *, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            resp = await self._fn(kind)(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except ApiException as e:
            raise _wrap(e) from None
        try:
            if resp.status != 200:
                await _json(resp)  # raises
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield orjson.loads(line)
        finally:
            resp.release()


_MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}  # not in the stubs


class KubeBinder:
    """`timeout`: our wait for each call, and the server-side deadline sent with the Binding."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.resource = client.ResourceV1Api(api)
        self.timeout = timeout

    async def _call(self, coro: Any) -> Any:
        try:
            resp = await asyncio.wait_for(coro, self.timeout)
        except ApiException as e:
            raise _wrap(e) from None
        except aiohttp.ClientConnectorError as e:  # connect or TLS handshake failed: nothing was sent
            raise NotSentError(0, f"API call failed: {e!r}") from None
        except (TimeoutError, aiohttp.ClientError) as e:  # may have been sent, and executed
            raise ApiError(0, f"API call failed: {e!r}") from None
        return await _json(resp)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            pod: dict[str, Any] = await self._call(
                self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return pod

    async def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ResourceClaim as JSON (a quorum read), or None when it does not exist."""
        try:
            claim: dict[str, Any] = await self._call(
                self.resource.read_namespaced_resource_claim(name, namespace, _preload_content=False)
            )
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return claim

    async def pending_pods(self) -> list[dict[str, Any]]:
        """Every unbound pod, in pages: a list without resourceVersion is a consistent read (served
        from etcd, or from the watch cache once it has caught up with etcd's current revision)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"field_selector": "spec.nodeName=", "limit": 500, "_preload_content": False}
            if token:
                kw["_continue"] = token
            page = await self._call(self.core.list_pod_for_all_namespaces(**kw))
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def annotate_pod(self, namespace: str, name: str, *, uid: str, annotations: dict[str, str]) -> None:
        """A JSON merge patch carrying metadata.uid: for a pod re-created under the name the patched
        object would change the immutable UID, so the API server refuses it (422 Invalid). Controllers
        use the same precondition (pkg/controller/controller_ref_manager.go,
        `GenerateDeleteOwnerRefStrategicMergeBytes`; `ReleasePod` reads IsInvalid as "re-created")."""
        body = {"metadata": {"uid": uid, "annotations": annotations}}
        await self._call(
            self.core.patch_namespaced_pod(name, namespace, body, _preload_content=False, **_MERGE_PATCH)
        )

    async def patch_pod_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into a pending pod: an update of the pod itself is what requeues it in
        kube-scheduler (scheduling_queue.go: podUpdate → movePodsToActiveOrBackoffQueue for itself).
        A pod gone meanwhile is not an error."""
        body = {"metadata": {"annotations": annotations}}
        try:
            await self._call(self.core.patch_namespaced_pod(name, namespace, body, _preload_content=False))
        except ApiError as e:
            if e.status != 404:
                raise

    async def bind(
        self, namespace: str, name: str, *, uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        body: Any = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": annotations},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self._call(
            self.api.call_api(  # as CoreV1Api.create_namespaced_pod_binding, plus the `timeout` parameter
                "/api/v1/namespaces/{namespace}/pods/{name}/binding",
                "POST",
                {"name": name, "namespace": namespace},
                [("timeout", f"{max(1, round(self.timeout * 1000))}ms")],
                {"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
            )
        )
