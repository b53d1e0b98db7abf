"""Self-managed webhook certificates rotating under load, against the real kube-apiserver.

The webhook Deployment's container from `helm template` runs as a local process (the chart's RBAC and
ServiceAccount; tests/deploy/chart.py `local_process`), with validities shrunk from days to seconds
so that within a minute it renews its serving certificate several times AND replaces its CA: CA 40 s,
serving certificate 20 s, renewal 12 s before expiry, 3 s between a new CA entering the caBundle and
the first certificate it signs being served (gpuplace/certctl.py). Meanwhile GPU pods are created
one after another; every one must be admitted and mutated by the webhook — no admission fails.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane, ManagedProcess, accounts, binaries
from gpuplace.localcluster.processes import free_port
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import pod_manifest
from tests.deploy import chart

pytestmark = pytest.mark.e2e
RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
DAY = 86400.0


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, local_binaries: binaries.Binaries
) -> Iterator[tuple[ManagedProcess, int]]:
    objs = chart.helm_template(chart.tool("helm"))
    control_plane.kubectl("create", "namespace", chart.NAMESPACE, check=False)
    control_plane.kubectl(
        "apply", "-f", "-", stdin=yaml.safe_dump_all([o for o in objs if o["kind"] in RBAC])
    )

    async def token() -> accounts.ServiceAccountCredentials:
        async with control_plane.api_client() as api:
            return await accounts.service_account_token(
                api, namespace=chart.NAMESPACE, name="gpuplace", server=control_plane.server,
                ca_file=control_plane.ca_file, kubeconfig_path=control_plane.workdir / "kubeconfigs" / "rot.kubeconfig",
            )  # fmt: skip

    creds = asyncio.run(token())
    port, ops = free_port(), free_port()
    certificates = {
        "ca_validity_days": 40 / DAY, "cert_validity_days": 20 / DAY, "renew_before_days": 12 / DAY,
        "ca_propagation_seconds": 3, "resync_seconds": 1, "extra_sans": ["IP:127.0.0.1"],
    }  # fmt: skip
    argv, env = chart.local_process(
        objs, "gpuplace-webhook", workdir=control_plane.workdir / "rotation", kubeconfig=creds.kubeconfig,
        pod_name="gpuplace-webhook-rot", ports={"webhook_server.port": port, "webhook_server.ops_port": ops},
        overrides={"webhook_server": {"certificates": certificates,
                                      "registration": {"url": f"https://127.0.0.1:{port}", "resync_seconds": 1}}},
    )  # fmt: skip
    process = control_plane.start_process(
        "webhook-rotation",
        argv,
        env=env,
        cwd=binaries.repo_root(),
        ready_url=f"http://127.0.0.1:{ops}/readyz",
    )
    try:
        yield process, port
    finally:
        control_plane.stop_process(process.name)
        control_plane.kubectl(
            "delete", "mutatingwebhookconfiguration", "gpuplace", "--ignore-not-found", check=False
        )
        control_plane.kubectl(
            "-n",
            chart.NAMESPACE,
            "delete",
            "secret",
            "gpuplace-webhook-tls",
            "--ignore-not-found",
            check=False,
        )


def _served(port: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())


def _gpu_pod(name: str) -> dict[str, Any]:
    body = pod_manifest(name, gpus=1)
    body["spec"]["schedulerName"] = "nobody"  # admission is the point; nothing schedules them
    return body


async def test_serving_certificate_and_ca_rotate_without_a_failed_admission(
    webhook: tuple[ManagedProcess, int], k8s: client.ApiClient, namespace: str, e2e_report: Any
) -> None:
    process, port = webhook
    core = client.CoreV1Api(k8s)
    adm = client.AdmissionregistrationV1Api(k8s)
    first = await asyncio.to_thread(_served, port)
    seen_certs = {first.serial_number}
    seen_issuers = {first.issuer.rfc4514_string()}
    bundle_sizes: set[int] = set()
    created, failures, unmutated = 0, [], []
    stop = asyncio.Event()

    async def stream() -> None:
        nonlocal created
        while not stop.is_set():
            name = f"p{created}"
            try:
                pod = await core.create_namespaced_pod(namespace, _gpu_pod(name))  # type: ignore[arg-type]
            except ApiException as e:
                failures.append(f"{name}: {e.status} {e.body}")
            else:
                if not any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations or []):
                    unmutated.append(name)
            created += 1

    async def rotated() -> bool:
        cert = await asyncio.to_thread(_served, port)
        seen_certs.add(cert.serial_number)
        seen_issuers.add(cert.issuer.rfc4514_string())
        mwc = await adm.read_mutating_webhook_configuration("gpuplace")
        bundle = base64.b64decode(mwc.webhooks[0].client_config.ca_bundle)
        bundle_sizes.add(len(x509.load_pem_x509_certificates(bundle)))
        # done once a certificate from a second CA is served and yet another renewal happened after it
        return len(seen_issuers) >= 2 and len(seen_certs) >= 4

    await wait_until(
        lambda: _mutating(core, namespace), within=30, what="the self-registered webhook to mutate GPU pods"
    )
    feeder = asyncio.create_task(stream())
    try:
        await wait_until(
            rotated, within=120, interval=0.5, what="a CA rotation and several certificate renewals"
        )
    finally:
        stop.set()
        await feeder
    assert process.alive()
    assert not failures, failures[:5]
    assert not unmutated, unmutated[:5]
    assert 2 in bundle_sizes  # the old and the new CA were trusted together during the handover
    e2e_report(
        f"certificate rotation: {len(seen_certs)} serving certificates from {len(seen_issuers)} CAs served "
        f"while {created} GPU pods were created: 0 admission failures, all mutated"
    )


async def _mutating(core: client.CoreV1Api, namespace: str) -> bool:
    pod = await core.create_namespaced_pod(namespace, _gpu_pod("probe"), dry_run="All")  # type: ignore[arg-type]
    return any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations or [])
