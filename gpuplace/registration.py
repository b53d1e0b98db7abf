"""gpuplace registers its own MutatingWebhookConfiguration, and only once it can be answered.

Why not a manifest applied with the rest: `failurePolicy: Fail` means that a registration the API
server cannot complete rejects every GPU pod. Applied with `kubectl apply -k` or `helm install`, the
configuration exists seconds to minutes before any webhook pod serves a certificate its caBundle
trusts (the Secret does not exist yet, the image is still pulling). So the chart and the kustomize base
ship the configuration as a file in gpuplace's ConfigMap, and each webhook replica creates or updates
it only when (1) it serves a certificate issued by a CA in the bundle it writes, and (2) the webhook
Service has a ready endpoint (EndpointSlices), which is what the API server's call will reach.
With `url` set (a local API server calling a loopback address, no Service) only (1) applies.

Uninstall: the configuration is owned (metadata.ownerReferences) by the ClusterRole
`owner_cluster_role` that the same release installs, so deleting the release lets the garbage
collector remove it; Kyverno owns its self-registered webhook configurations the same way. The
self-managed certificate Secret (gpuplace/certctl.py) has the same owner. A cluster-scoped object can
only have a cluster-scoped owner, hence a ClusterRole; kube-controller-manager's garbage collector
deletes a dependent once none of its owners exists by that uid
(pkg/controller/garbagecollector/garbagecollector.go, `attemptToDeleteItem`), so a write that raced
the owner's deletion is collected too.

A later change of the caBundle (certificate rotation, gpuplace/certctl.py) is written by the same loop.
"""

from __future__ import annotations

import base64
import copy
import logging
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("gpuplace.registration")


class RegistrationSettings(BaseModel):
    """`webhook_server.registration`: the configuration gpuplace registers itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Path = Field(description="YAML file with the MutatingWebhookConfiguration (no caBundle).")
    owner_cluster_role: str | None = Field(
        default=None, description="ClusterRole that owns the registration (garbage-collected with it)."
    )
    url: str | None = Field(
        default=None,
        description="Call this URL (plus the service path) instead of the Service: local API servers only.",
    )
    ca_file: Path | None = Field(
        default=None, description="caBundle source when certificates are not self-managed (e.g. ca.crt)."
    )
    resync_seconds: float = Field(default=10, gt=0)


def desired(
    manifest: dict[str, Any], ca_bundle: bytes, *, url: str | None, owner: dict[str, Any] | None
) -> dict[str, Any]:
    """The configuration to register: the manifest with caBundle (and url, owner) filled in."""
    body = copy.deepcopy(manifest)
    encoded = base64.b64encode(ca_bundle).decode()
    for hook in body.get("webhooks") or []:
        cc = hook.setdefault("clientConfig", {})
        if url is not None:
            path = (cc.pop("service", None) or {}).get("path", "")
            cc["url"] = url.rstrip("/") + path
        cc["caBundle"] = encoded
    if owner is not None:
        body.setdefault("metadata", {})["ownerReferences"] = [owner]
    return body


def _same(live: dict[str, Any], want: dict[str, Any]) -> bool:
    keys = ("labels", "annotations", "ownerReferences")
    lm, wm = live.get("metadata") or {}, want.get("metadata") or {}
    if any((lm.get(k) or None) != (wm.get(k) or None) for k in keys):
        return False
    wanted = [dict(h) for h in want.get("webhooks") or []]
    keys_set = set(wanted[0]) if wanted else set()
    have = [{k: h.get(k) for k in keys_set} for h in live.get("webhooks") or []]
    return have == [{k: h.get(k) for k in keys_set} for h in wanted]


async def owner_reference(api: client.ApiClient, cluster_role: str) -> dict[str, Any]:
    """The ownerReference to ClusterRole `cluster_role`; raises (404) while it does not exist, so
    nothing is written with an owner the garbage collector would remove at once."""
    role = await client.RbacAuthorizationV1Api(api).read_cluster_role(cluster_role)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "name": role.metadata.name, "uid": role.metadata.uid}  # fmt: skip


class Registrar:
    """Create or update the webhook configuration (`ensure`), gated on a ready Service endpoint."""

    def __init__(self, api: client.ApiClient, settings: RegistrationSettings) -> None:
        self.api = api
        self.s = settings
        self.manifest: dict[str, Any] = yaml.safe_load(settings.manifest.read_text())
        if not isinstance(self.manifest, dict) or self.manifest.get("kind") != "MutatingWebhookConfiguration":
            raise ValueError(f"{settings.manifest} is not a MutatingWebhookConfiguration")
        self.name = str(self.manifest["metadata"]["name"])
        self.registered_bundle: bytes | None = None

    async def _owner(self) -> dict[str, Any] | None:
        if not self.s.owner_cluster_role:
            return None
        return await owner_reference(self.api, self.s.owner_cluster_role)

    async def service_ready(self) -> bool:
        """Some webhook Service the manifest names has a ready endpoint (EndpointSlice conditions.ready)."""
        if self.s.url is not None:
            return True
        discovery = client.DiscoveryV1Api(self.api)
        for hook in self.manifest.get("webhooks") or []:
            svc = (hook.get("clientConfig") or {}).get("service")
            if not svc:
                return True
            slices = await discovery.list_namespaced_endpoint_slice(
                svc["namespace"], label_selector=f"kubernetes.io/service-name={svc['name']}"
            )
            ready = any(
                ep.conditions is None or ep.conditions.ready is not False
                for sl in slices.items
                for ep in sl.endpoints or []
            )
            if not ready:
                return False
        return True

    async def ensure(self, ca_bundle: bytes) -> bool:
        """Register or update; False (and nothing written) while the Service has no ready endpoint."""
        if not await self.service_ready():
            log.info("webhook Service has no ready endpoint yet; not registering %s", self.name)
            return False
        want = desired(self.manifest, ca_bundle, url=self.s.url, owner=await self._owner())
        adm = client.AdmissionregistrationV1Api(self.api)
        try:
            live = await adm.read_mutating_webhook_configuration(self.name)
        except ApiException as e:
            if e.status != 404:
                raise
            await adm.create_mutating_webhook_configuration(want)  # type: ignore[arg-type]
            log.info("registered MutatingWebhookConfiguration %s", self.name)
        else:
            live_body: dict[str, Any] = self.api.sanitize_for_serialization(live)
            if not _same(live_body, want):
                want["metadata"]["resourceVersion"] = live.metadata.resource_version
                await adm.replace_mutating_webhook_configuration(self.name, want)  # type: ignore[arg-type]
                log.info("updated MutatingWebhookConfiguration %s (caBundle or spec changed)", self.name)
        self.registered_bundle = ca_bundle
        return True
