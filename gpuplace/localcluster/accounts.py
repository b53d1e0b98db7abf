"""Least-privilege identities and webhook registration on the local apiserver (async).

gpuplace must be shown to work with its own ServiceAccount and only the RBAC rules it documents,
not with the admin token. :func:`create_service_account` creates the ServiceAccount, a ClusterRole
(and optionally a namespaced Role) with exactly the given rules, binds them, mints a token through
the TokenRequest API (works without kube-controller-manager because the apiserver has the
service-account signing key) and writes a kubeconfig for it.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster.kubeconfig import write_kubeconfig

HTTP_CONFLICT = 409
HTTP_NOT_FOUND = 404


@dataclass(frozen=True)
class ServiceAccountCredentials:
    namespace: str
    name: str
    username: str  # system:serviceaccount:<namespace>:<name>
    token: str
    kubeconfig: Path


async def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        body: Any = {"metadata": {"name": name}}
        await client.CoreV1Api(api).create_namespace(body)
    except ApiException as exc:
        if exc.status != HTTP_CONFLICT:
            raise


async def _create_or_replace(
    create: Any, replace: Any, read: Any, name: str, body: dict[str, Any], **ns: str
) -> None:
    try:
        await create(body=body, **ns)
    except ApiException as exc:
        if exc.status != HTTP_CONFLICT:
            raise
        current = await read(name=name, **ns)
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        await replace(name=name, body=body, **ns)


async def create_service_account(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    server: str,
    ca_file: Path,
    kubeconfig_path: Path,
    cluster_rules: Sequence[Mapping[str, Any]] = (),
    namespace_rules: Sequence[Mapping[str, Any]] = (),
    token_seconds: int = 24 * 3600,
) -> ServiceAccountCredentials:
    """Create SA + ClusterRole/Binding (+ Role/RoleBinding in ``namespace``), mint a token, write a kubeconfig.

    Rules are RBAC PolicyRule dicts, e.g. ``{"apiGroups": [""], "resources": ["pods/binding"],
    "verbs": ["create"]}``. Names of cluster-scoped objects are ``<namespace>:<name>`` so several
    tests can create accounts with the same name in different namespaces.
    """
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    await ensure_namespace(api, namespace)
    try:
        account: Any = {"metadata": {"name": name}}
        await core.create_namespaced_service_account(namespace, account)
    except ApiException as exc:
        if exc.status != HTTP_CONFLICT:
            raise
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    cluster_name = f"{namespace}:{name}"
    if cluster_rules:
        await _create_or_replace(
            rbac.create_cluster_role,
            rbac.replace_cluster_role,
            rbac.read_cluster_role,
            cluster_name,
            {"metadata": {"name": cluster_name}, "rules": [dict(r) for r in cluster_rules]},
        )
        await _create_or_replace(
            rbac.create_cluster_role_binding,
            rbac.replace_cluster_role_binding,
            rbac.read_cluster_role_binding,
            cluster_name,
            {
                "metadata": {"name": cluster_name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_name,
                },
                "subjects": subject,
            },
        )
    if namespace_rules:
        await _create_or_replace(
            rbac.create_namespaced_role,
            rbac.replace_namespaced_role,
            rbac.read_namespaced_role,
            name,
            {"metadata": {"name": name}, "rules": [dict(r) for r in namespace_rules]},
            namespace=namespace,
        )
        await _create_or_replace(
            rbac.create_namespaced_role_binding,
            rbac.replace_namespaced_role_binding,
            rbac.read_namespaced_role_binding,
            name,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject,
            },
            namespace=namespace,
        )
    return await service_account_token(
        api,
        namespace=namespace,
        name=name,
        server=server,
        ca_file=ca_file,
        kubeconfig_path=kubeconfig_path,
        token_seconds=token_seconds,
    )


async def service_account_token(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    server: str,
    ca_file: Path,
    kubeconfig_path: Path,
    token_seconds: int = 24 * 3600,
) -> ServiceAccountCredentials:
    """Mint a token for an existing ServiceAccount (TokenRequest API) and write a kubeconfig for it."""
    core = client.CoreV1Api(api)
    request: Any = {"spec": {"expirationSeconds": token_seconds}}
    token_request = await core.create_namespaced_service_account_token(name, namespace, request)
    token = token_request.status.token
    username = f"system:serviceaccount:{namespace}:{name}"
    write_kubeconfig(kubeconfig_path, server=server, ca_file=ca_file, token=token, user=username)
    return ServiceAccountCredentials(
        namespace=namespace, name=name, username=username, token=token, kubeconfig=kubeconfig_path
    )


_WEBHOOK_APIS = {
    "MutatingWebhookConfiguration": "mutating_webhook_configuration",
    "ValidatingWebhookConfiguration": "validating_webhook_configuration",
}


def _with_ca_bundle(manifest: Mapping[str, Any], ca_bundle: bytes | str | None) -> dict[str, Any]:
    body = copy.deepcopy(dict(manifest))
    if ca_bundle is None:
        return body
    pem = ca_bundle.encode() if isinstance(ca_bundle, str) else ca_bundle
    encoded = base64.b64encode(pem).decode()
    for hook in body.get("webhooks", []):
        hook.setdefault("clientConfig", {})["caBundle"] = encoded
    return body


async def register_webhook(
    api: client.ApiClient, manifest: Mapping[str, Any], ca_bundle: bytes | str | None = None
) -> str:
    """Create (or replace) a Mutating/ValidatingWebhookConfiguration; returns its name.

    ``ca_bundle`` is PEM (bytes or str); it is base64-encoded into every webhook's clientConfig.
    The apiserver picks registrations up asynchronously: callers should retry a dry-run create
    until it comes back mutated (see :func:`gpuplace.localcluster.waiting.wait_until`).
    """
    kind = manifest.get("kind", "MutatingWebhookConfiguration")
    if kind not in _WEBHOOK_APIS:
        raise ValueError(f"not a webhook configuration: kind={kind!r}")
    suffix = _WEBHOOK_APIS[kind]
    admission = client.AdmissionregistrationV1Api(api)
    body = _with_ca_bundle(manifest, ca_bundle)
    body.setdefault("apiVersion", "admissionregistration.k8s.io/v1")
    body.setdefault("kind", kind)
    name = body["metadata"]["name"]
    await _create_or_replace(
        getattr(admission, f"create_{suffix}"),
        getattr(admission, f"replace_{suffix}"),
        getattr(admission, f"read_{suffix}"),
        name,
        body,
    )
    return str(name)


async def unregister_webhook(
    api: client.ApiClient, name: str, kind: str = "MutatingWebhookConfiguration"
) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    try:
        await getattr(admission, f"delete_{_WEBHOOK_APIS[kind]}")(name)
    except ApiException as exc:
        if exc.status != HTTP_NOT_FOUND:
            raise
