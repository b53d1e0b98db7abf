"""What stands in for kubelets and runs the controllers: kube-controller-manager and kwok.

With these two, the local control plane has a lifecycle: Jobs and Deployments create pods, bound pods
become Running, finish (Succeeded / Failed) after the time they say, graceful deletion completes,
namespaces finish terminating, and nodes that stop being Ready are tainted and emptied.

- **kube-controller-manager** v1.36.3 runs the controllers in :data:`CONTROLLERS`, each under its own
  ServiceAccount (``--use-service-account-credentials``, as kubeadm runs it), leader election off.
- **kwok** (sigs.k8s.io/kwok v0.8.0, ``cmd/kwok``) manages every fake node (label
  ``gpuplace.io/fake-node=true``): it renews each node's Lease and plays the pod lifecycle with the
  Stages in ``kwok_stages.yaml`` (see that file for what differs from kwok's stock stages).

Pods say how long they run with annotations (:func:`run_for`):

- ``gpuplace.io/kwok-duration: "30s"`` — the pod ends after that long Running (a Go duration); without
  it a pod runs until deleted, like a server;
- ``gpuplace.io/kwok-exit-code: "1"`` — with ``restartPolicy: Never`` the pod ends ``Failed`` with that
  exit code instead of ``Succeeded`` (a kubelet would restart the container of an ``OnFailure`` pod; kwok
  cannot, so an ``OnFailure`` pod with a non-zero code just keeps running).

Labelling a node ``gpuplace.io/kwok-not-ready=true`` makes its "kubelet" report ``Ready=False``; the
node-lifecycle controller then taints it ``node.kubernetes.io/not-ready:NoExecute`` and the
taint-eviction-controller evicts its pods once their toleration runs out.

Timers (:class:`Timers`) are upstream flags shortened for tests, never sleeps: the node-lifecycle
controller looks every second, a node that stops renewing its Lease (20 s, renewed every 5 s) is
unhealthy after 30 s, and the not-ready / unreachable tolerations the DefaultTolerationSeconds admission
plugin gives every pod last 5 s instead of 300 s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes_asyncio import client

from gpuplace.localcluster.processes import ProcessStartError, probe
from gpuplace.localcluster.waiting import wait_until

if TYPE_CHECKING:
    from gpuplace.localcluster.controlplane import ControlPlane

DURATION_ANNOTATION = "gpuplace.io/kwok-duration"
EXIT_CODE_ANNOTATION = "gpuplace.io/kwok-exit-code"
NOT_READY_LABEL = "gpuplace.io/kwok-not-ready"
MANAGED_NODES = "gpuplace.io/fake-node=true"  # the label fake_nodes.node_manifest puts on every node
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"

# The controllers the local world needs (kube-controller-manager --controllers; names from
# cmd/kube-controller-manager/names/controller_names.go). Off: endpoints/endpointslice (no Services are
# served), daemonset/statefulset/cronjob/hpa (no scenario uses them), volumes (no storage), CSR signing
# (no kubelet asks for certificates), node-ipam (no pod network).
CONTROLLERS = (
    "serviceaccount-token-controller",
    "serviceaccount-controller",  # the "default" ServiceAccount the ServiceAccount admission plugin needs
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt, referenced by projected token volumes
    "clusterrole-aggregation-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "resourcequota-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "disruption-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",  # deletes the pods of deleted nodes
    # DRA: makes a pod's ResourceClaims from its ResourceClaimTemplates, records them in
    # pod.status.resourceClaimStatuses, drops ended pods from reservedFor and deletes generated claims
    # with their pods (pkg/controller/resourceclaim/controller.go)
    "resourceclaim-controller",
)


@dataclass(frozen=True)
class Timers:
    """Lifecycle timers, in seconds (upstream defaults in the comments)."""

    node_monitor_period: int = 1  # --node-monitor-period, 5 s
    node_monitor_grace_period: int = 30  # --node-monitor-grace-period, 50 s (6 missed Lease renewals)
    node_lease_duration: int = 20  # kwok --node-lease-duration-seconds (renewed every quarter), kubelet 40 s
    not_ready_toleration: int = 5  # kube-apiserver --default-not-ready-toleration-seconds, 300 s
    unreachable_toleration: int = 5  # kube-apiserver --default-unreachable-toleration-seconds, 300 s

    def apiserver_args(self) -> list[str]:
        return [
            f"--default-not-ready-toleration-seconds={self.not_ready_toleration}",
            f"--default-unreachable-toleration-seconds={self.unreachable_toleration}",
        ]


def run_for(seconds: float, *, exit_code: int = 0) -> dict[str, str]:
    """Pod annotations that make kwok end the pod after ``seconds`` Running (Failed when ``exit_code``)."""
    notes = {DURATION_ANNOTATION: f"{seconds:g}s"}
    if exit_code:
        notes[EXIT_CODE_ANNOTATION] = str(exit_code)
    return notes


def kwok_stages() -> list[dict[str, Any]]:
    """The Stage documents of ``kwok_stages.yaml``."""
    text = resources.files(__package__).joinpath("kwok_stages.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def write_kwok_config(path: Path) -> Path:
    """kwok's ``--config`` file: the Stages (kwok's own options keep their defaults, set by flags)."""
    path.write_text(yaml.safe_dump_all(kwok_stages(), sort_keys=False))
    return path


def kwok_argv(binary: Path, *, kubeconfig: Path, config_file: Path, port: int, timers: Timers) -> list[str]:
    """kwok managing every fake node; /healthz on ``127.0.0.1:port`` once its controllers started."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={config_file}",
        f"--node-lease-duration-seconds={timers.node_lease_duration}",
        f"--manage-nodes-with-label-selector={MANAGED_NODES}",
        f"--server-address=127.0.0.1:{port}",
    ]


def controller_manager_argv(
    binary: Path,
    *,
    kubeconfig: Path,
    pki: Path,
    port: int,
    timers: Timers,
    controllers: Sequence[str] = CONTROLLERS,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """kube-controller-manager as kubeadm runs it (own identity, per-controller ServiceAccounts), with
    ``timers`` and only ``controllers``. ``pki`` holds ca.crt, sa.key and kube-controller-manager.crt/key."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--authentication-skip-lookup=true",  # no front-proxy CA here
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'kube-controller-manager.crt'}",
        f"--tls-private-key-file={pki / 'kube-controller-manager.key'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--controllers={','.join(controllers)}",
        f"--node-monitor-period={timers.node_monitor_period}s",
        f"--node-monitor-grace-period={timers.node_monitor_grace_period}s",
        # client-side throttling would be the bottleneck of the churn scenarios, not the controllers
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
        *extra_args,
    ]


def start(cp: ControlPlane, *, controller_manager_args: Sequence[str] = ()) -> None:
    """Start kube-controller-manager and kwok for ``cp``; return once pods can be created.

    Ready means: both answer ``/healthz``, and the ``default`` ServiceAccount of namespace ``default``
    exists (the ServiceAccount admission plugin rejects pods of a namespace until it does).
    """
    pki = cp.workdir / "pki"
    cp.start_on_free_port(
        "kube-controller-manager",
        lambda port: controller_manager_argv(
            cp.binaries.kube_controller_manager,
            kubeconfig=cp.controller_manager_kubeconfig,
            pki=pki,
            port=port,
            timers=cp.timers,
            extra_args=controller_manager_args,
        ),
        "https://127.0.0.1:{port}/healthz",
        ready_timeout=cp.startup_timeout,
    )
    config_file = write_kwok_config(cp.workdir / "kwok.yaml")
    cp.start_on_free_port(
        "kwok",
        lambda port: kwok_argv(
            cp.binaries.kwok, kubeconfig=cp.kwok_kubeconfig, config_file=config_file, port=port, timers=cp.timers
        ),
        "http://127.0.0.1:{port}/healthz",
        ready_timeout=cp.startup_timeout,
    )
    wait_default_service_account(cp, "default", timeout=cp.startup_timeout)


def wait_default_service_account(cp: ControlPlane, namespace: str, *, timeout: float = 30.0) -> None:
    """Block until the serviceaccount-controller made ``namespace``'s ``default`` ServiceAccount."""
    url = f"{cp.server}/api/v1/namespaces/{namespace}/serviceaccounts/default"
    deadline = time.monotonic() + timeout
    while probe(url, ca_file=cp.ca_file, token=cp.admin_token)[0] != 200:
        if time.monotonic() > deadline:
            raise ProcessStartError(
                "kube-controller-manager",
                f"no default ServiceAccount in namespace {namespace} after {timeout:.0f}s",
                cp.log_file("kube-controller-manager"),
            )
        time.sleep(0.1)


async def wait_namespace_usable(api: client.ApiClient, namespace: str, *, within: float = 30.0) -> None:
    """Wait until pods can be created in a new namespace (its ``default`` ServiceAccount exists)."""
    core = client.CoreV1Api(api)

    async def exists() -> bool:
        await core.read_namespaced_service_account("default", namespace)
        return True

    await wait_until(exists, within=within, what=f"the default ServiceAccount of namespace {namespace}")
