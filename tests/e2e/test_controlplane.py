"""The harness itself: a real v1.36.3 apiserver and scheduler bind pods to fake nodes.

These tests prove the pieces every other e2e test stands on: fake Ready nodes get pods bound by
upstream kube-scheduler (taints and extended resources respected), kubectl talks to the server,
server-side dry-run and validation work, least-privilege ServiceAccount tokens work, and a
webhook run as a child process with a certificate from the harness CA is called by the apiserver.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from gpuplace.localcluster import ControlPlane, ManagedProcess, free_port, gpuplace_proc, wait_until
from gpuplace.localcluster.fake_nodes import GPU_RESOURCE, GPU_TAINT_KEY
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import ProcessStartError
from gpuplace.localcluster.workload import wait_pending

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
KUBE_VERSION = "v1.36.3"
PAUSE = "registry.k8s.io/pause:3.10"
NodeFactory = Callable[..., Awaitable[str]]


def pod_body(name: str, *, selector: dict[str, str], gpus: int = 0) -> Any:
    resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    spec: dict[str, Any] = {
        "nodeSelector": selector,
        "containers": [{"name": "main", "image": PAUSE, "resources": resources}],
    }
    if gpus:
        resources["limits"] = {GPU_RESOURCE: str(gpus)}
        spec["tolerations"] = [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"name": name}, "spec": spec}


async def bound_node(k8s: client.ApiClient, namespace: str, name: str, within: float = 30.0) -> str:
    core = client.CoreV1Api(k8s)

    async def node_name() -> str | None:
        pod = await core.read_namespaced_pod(name, namespace)
        return pod.spec.node_name

    bound = await wait_until(node_name, within=within, what=f"pod {namespace}/{name} to be bound")
    assert bound is not None
    return bound


async def test_upstream_scheduler_binds_pods_to_fake_nodes(
    default_scheduler: ManagedProcess, k8s: client.ApiClient, namespace: str, node_factory: NodeFactory
) -> None:
    # Label this test's nodes and select on the label, so nodes of other tests cannot interfere.
    mine = {"e2e.gpuplace.io/owner": namespace}
    cpu_nodes = {await node_factory("cpu", labels=mine), await node_factory("cpu", labels=mine)}
    gpu_node = await node_factory("hgx-h100", labels=mine, zone="zone-a", rack="a1")
    core = client.CoreV1Api(k8s)

    # A plain pod does not tolerate the nvidia.com/gpu taint: it lands on a CPU node.
    await core.create_namespaced_pod(namespace, pod_body("plain", selector=mine))
    assert await bound_node(k8s, namespace, "plain") in cpu_nodes

    # A pod that tolerates the taint and needs GPUs can only fit the GPU node (extended resource).
    await core.create_namespaced_pod(namespace, pod_body("gpu", selector=mine, gpus=8))
    assert await bound_node(k8s, namespace, "gpu") == gpu_node

    # The node is full now (8/8 GPUs): another GPU pod stays unbound (phase Pending; bound ones are Running).
    await core.create_namespaced_pod(namespace, pod_body("gpu-2", selector=mine, gpus=1))
    failed = await wait_pending(k8s, namespace, "gpu-2", contains="Insufficient nvidia.com/gpu", within=60)
    assert failed.condition_reason == "Unschedulable"
    pending = await core.read_namespaced_pod("gpu-2", namespace)
    assert pending.spec.node_name is None
    assert pending.status.phase == "Pending"

    # Deleted with grace period 0: gone at once.
    await core.delete_namespaced_pod("gpu", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as gone:
        await core.read_namespaced_pod("gpu", namespace)
    assert gone.value.status == 404


async def test_kubectl_reports_server_version(control_plane: ControlPlane) -> None:
    result = await asyncio.to_thread(control_plane.kubectl, "version", "-o", "json")
    versions = json.loads(result.stdout)
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION


async def test_kubectl_server_side_dry_run(
    control_plane: ControlPlane, k8s: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "settings"},
                    "data": {"a": "1"},
                },
                {"apiVersion": "v1", "kind": "Pod", **pod_body("trainer", selector={}, gpus=2)},
            ]
        )
    )
    result = await asyncio.to_thread(
        control_plane.kubectl, "apply", "--dry-run=server", "-n", namespace, "-f", str(manifest)
    )
    assert "configmap/settings created (server dry run)" in result.stdout
    assert "pod/trainer created (server dry run)" in result.stdout
    with pytest.raises(ApiException) as missing:
        await client.CoreV1Api(k8s).read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404

    # The server validates: an extended resource whose request differs from its limit is refused.
    bad = pod_body("bad", selector={}, gpus=2)
    bad["spec"]["containers"][0]["resources"]["requests"][GPU_RESOURCE] = "1"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", **bad}))
    refused = await asyncio.to_thread(
        control_plane.kubectl, "apply", "--dry-run=server", "-n", namespace, "-f", str(manifest), check=False
    )
    assert refused.returncode != 0
    assert "must be equal to nvidia.com/gpu limit" in refused.stderr


async def test_service_account_token_has_only_its_rules(control_plane: ControlPlane, namespace: str) -> None:
    creds = await control_plane.create_service_account(
        namespace,
        "gpuplace",
        cluster_rules=[
            {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
        ],
    )
    whoami = await asyncio.to_thread(
        control_plane.kubectl, "auth", "whoami", "-o", "json", kubeconfig=creds.kubeconfig
    )
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == creds.username
    async with control_plane.api_client(creds.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.list_node()
        await core.list_pod_for_all_namespaces()
        with pytest.raises(ApiException) as denied:
            await core.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            await core.delete_node("anything")
        assert denied.value.status == 403


async def test_webhook_child_process_with_harness_certificate(
    control_plane: ControlPlane, k8s: client.ApiClient, namespace: str
) -> None:
    pair = control_plane.issue_serving_cert("echo-webhook")
    for attempt in range(gpuplace_proc.PORT_ATTEMPTS):  # free_port() races other processes for the port
        port = free_port()
        try:
            process = control_plane.start_process(
                "echo-webhook",
                [
                    sys.executable,
                    str(HERE / "echo_webhook.py"),
                    "--port",
                    str(port),
                    "--cert",
                    str(pair.cert_file),
                    "--key",
                    str(pair.key_file),
                ],
                ready_url=f"https://127.0.0.1:{port}/healthz",
            )
            break
        except ProcessStartError as exc:
            if not exc.port_clash or attempt == gpuplace_proc.PORT_ATTEMPTS - 1:
                raise
    name = f"echo-{namespace}"
    manifest = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "echo.gpuplace.io",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate"},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    try:
        await control_plane.register_webhook(manifest, control_plane.ca_pem)
        core = client.CoreV1Api(k8s)

        async def mutated() -> str | None:
            pod = await core.create_namespaced_pod(namespace, pod_body("probe", selector={}), dry_run="All")
            return (pod.metadata.labels or {}).get("gpuplace.io/echo")

        assert await wait_until(mutated, within=30, what="webhook registration") == "seen"
    finally:
        await control_plane.unregister_webhook(name)
        control_plane.stop_process(process.name)


def test_gpuplace_takes_other_ports_when_one_was_taken_meanwhile(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() only says a port was free a moment ago; on a busy CI machine another process can
    take it before gpuplace binds it. etcd, kube-apiserver and kube-scheduler were retried on new
    ports then; gpuplace was not, and its start failed with "address already in use"."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = int(taken.getsockname()[1])
    handed: list[int] = []

    def racing_free_port() -> int:  # the first port handed out is already someone else's
        handed.append(busy if not handed else real_free_port())
        return handed[-1]

    real_free_port = gpuplace_proc.free_port
    monkeypatch.setattr(gpuplace_proc, "free_port", racing_free_port)
    with taken, GpuplaceServer(control_plane, name="gpuplace-port-race", register_webhook=False) as gp:
        assert busy in handed and busy not in (gp.extender_port, gp.webhook_port)
        assert gp.process is not None and gp.process.alive()
