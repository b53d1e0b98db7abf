"""A local, real Kubernetes control plane for gpuplace's e2e tests and demo.

Upstream etcd, kube-apiserver, kube-controller-manager and kube-scheduler and the kwok controller
(built by ``deploy/local/build.sh``) run as child processes on loopback ports; fake GPU nodes are
created through the API and kwok plays their kubelets. See :mod:`gpuplace.localcluster.controlplane`
for what runs and why, :mod:`gpuplace.localcluster.lifecycle` for the controllers, kwok's stages and
the shortened timers, :mod:`gpuplace.localcluster.fake_nodes` for the nodes and
:mod:`gpuplace.localcluster.node_presets` for the server presets.

    with ControlPlane() as cp:
        cp.start_scheduler()
        async with cp.api_client() as api:
            await create_demo_cluster(api)
"""

from gpuplace.localcluster.accounts import ServiceAccountCredentials
from gpuplace.localcluster.binaries import Binaries, BinariesMissingError
from gpuplace.localcluster.controlplane import ControlPlane
from gpuplace.localcluster.fake_nodes import (
    PRESETS,
    NodePreset,
    create_demo_cluster,
    create_fake_node,
    create_node,
    delete_nodes,
    demo_cluster,
    node_manifest,
)
from gpuplace.localcluster.pki import CertPair
from gpuplace.localcluster.processes import ManagedProcess, ProcessStartError, free_port
from gpuplace.localcluster.waiting import WaitTimeoutError, wait_until

__all__ = [
    "PRESETS",
    "Binaries",
    "BinariesMissingError",
    "CertPair",
    "ControlPlane",
    "ManagedProcess",
    "NodePreset",
    "ProcessStartError",
    "ServiceAccountCredentials",
    "WaitTimeoutError",
    "create_demo_cluster",
    "create_fake_node",
    "create_node",
    "delete_nodes",
    "demo_cluster",
    "free_port",
    "node_manifest",
    "wait_until",
]
