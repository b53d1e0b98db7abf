"""gpuplace's ServiceAccount on a local control plane, with exactly the RBAC deploy/ ships.

Applies deploy/'s RBAC documents (Namespace, ServiceAccount, ClusterRoles/Roles and their bindings) and
mints that ServiceAccount's token through the TokenRequest API: gpuplace talks to the API server with the
rights the manifests give it, never the admin token. When deploy/ lets the ServiceAccount create no
``pods/binding``, a fallback ClusterRole is applied and reported (tests fail on it).
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from gpuplace.localcluster import accounts, manifests
from gpuplace.localcluster.controlplane import ControlPlane
from gpuplace.localcluster.waiting import run_sync

log = logging.getLogger("gpuplace.localcluster")

DEFAULT_NAMESPACE = "gpuplace-system"
DEFAULT_ACCOUNT = "gpuplace"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
_FALLBACK_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices", "resourceclaims"],
     "verbs": ["get", "list", "watch"]},
]


def apply_rbac(cp: ControlPlane, name: str) -> tuple[accounts.ServiceAccountCredentials, bool]:
    """Apply deploy/'s RBAC for gpuplace's ServiceAccount and mint its token (and whether the fallback
    ClusterRole was needed)."""
    docs = manifests.objects_of_kind(RBAC_KINDS)
    namespace, account = DEFAULT_NAMESPACE, DEFAULT_ACCOUNT
    for doc in docs:
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            for subject in doc.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    namespace, account = subject.get("namespace", namespace), subject["name"]
    namespaces = {namespace} | {
        str(d["metadata"]["namespace"]) for d in docs if (d.get("metadata") or {}).get("namespace")
    }
    base: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in sorted(namespaces)
    ]
    base.append(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}}
    )
    bundle = base + [d for d in docs if d["kind"] not in ("Namespace", "ServiceAccount")]
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bundle))
    fallback_needed = not _can(cp, namespace, account, "create", "pods", "binding")
    if fallback_needed:
        log.warning("deploy/ grants %s/%s no pods/binding: applying a fallback ClusterRole", namespace, account)
        role = f"{name}-local-fallback"
        fallback = [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": role}, "rules": _FALLBACK_RULES},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": role},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
        ]  # fmt: skip
        cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(fallback))

    async def token() -> accounts.ServiceAccountCredentials:
        async with cp.api_client() as api:
            return await accounts.service_account_token(
                api,
                namespace=namespace,
                name=account,
                server=cp.server,
                ca_file=cp.ca_file,
                kubeconfig_path=cp.workdir / "kubeconfigs" / f"{name}.kubeconfig",
            )

    return run_sync(token()), fallback_needed


def _can(
    cp: ControlPlane, namespace: str, account: str, verb: str, resource: str, subresource: str = ""
) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{account}", "-A"]
    if subresource:
        args.insert(4, f"--subresource={subresource}")
    return cp.kubectl(*args, check=False).stdout.strip() == "yes"
