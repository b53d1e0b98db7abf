"""Extender HA on the real control plane: two replicas started from what `helm template` renders.

Both processes run the chart's extender container (args, env, config; tests/deploy/chart.py
`local_process`) with the chart's ServiceAccount and RBAC. kube-scheduler v1.36.3 reaches them through
tests/e2e/service_proxy.py, standing in for Service `gpuplace` (new connections to the Ready replica,
established ones pinned, as kube-proxy does). Lease timings are gpuplace's defaults
(scheduler/leader.py): 15 s lease, 10 s renew deadline, 2 s retry, so a follower takes over at most
~17 s after the leader's last renewal.

- SIGKILL of the leader in the middle of a stream of GPU pods: the follower becomes Ready (the time is
  reported in the e2e summary, not asserted: ~15-17 s measured here, the 20 s target), every pod is bound, and no GPU is booked twice (checked while the stream runs and at the end).
- SIGSTOP of the leader until the follower has taken the lease, with a bind request already written to
  a keep-alive connection to it; after SIGCONT that request is never answered and the pod is never
  bound by it, and the old leader exits (to restart as a follower).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kubernetes_asyncio import client

from gpuplace import numba_cache
from gpuplace.localcluster import ControlPlane, ManagedProcess, accounts, binaries
from gpuplace.localcluster.processes import free_port, probe
from gpuplace.localcluster.waiting import WaitTimeoutError, wait_until
from gpuplace.localcluster.workload import create_pod, pod_manifest, wait_bound
from tests.deploy import chart
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner
from tests.e2e.service_proxy import ServiceProxy

pytestmark = pytest.mark.e2e
SCHEDULER = "gpuplace-ha"
RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@dataclass
class Replicas:
    cp: ControlPlane
    objs: list[dict[str, Any]]
    kubeconfig: Path
    numba_cache: Path
    baked: Path
    running: dict[str, tuple[ManagedProcess, str]] = field(
        default_factory=dict
    )  # pod name → (process, base URL)
    started: int = 0

    def start(self) -> str:
        """One more replica (a new pod name, as a Deployment would create); returns its name."""
        name = f"gpuplace-extender-{self.started}"
        self.started += 1
        port = free_port()
        argv, env = chart.local_process(
            self.objs, "gpuplace-extender", workdir=self.cp.workdir / "ha", kubeconfig=self.kubeconfig,
            pod_name=name, ports={"scheduler.port": port}, shared={"numba-cache": self.numba_cache},
        )  # fmt: skip
        env[numba_cache.BAKED_ENV] = str(self.baked)
        base = f"http://127.0.0.1:{port}"
        process = self.cp.start_process(
            name, argv, env=env, cwd=binaries.repo_root(), ready_url=f"{base}/healthz"
        )
        self.running[name] = (process, base)
        return name

    def ready(self) -> list[str]:
        return [n for n, (p, base) in self.running.items() if p.alive() and probe(f"{base}/readyz")[0] == 200]

    def warm_followers(self) -> list[str]:
        """Replicas that could take over at once: alive, not leading, cache synced and kernels warm."""
        out = []
        for n, (p, base) in self.running.items():
            status, body = probe(f"{base}/readyz")
            if p.alive() and status == 503 and "follower" in body and "kernels warm" in body:
                out.append(n)
        return out

    def describe(self) -> str:
        """Every replica's /readyz answer and log tail: what a failed wait needs to say why."""
        out = []
        for n, (p, base) in self.running.items():
            status, body = probe(f"{base}/readyz")
            out.append(f"{n}: alive={p.alive()} /readyz {status} {body.strip()!r}\n{self.log_tail(n)}")
        return "\n".join(out)

    def log_tail(self, name: str, lines: int = 25) -> str:
        """The log's last lines, the probes' access lines left out (they are most of it)."""
        text = self.process(name).log_file.read_text(errors="replace").splitlines()
        kept = [line[:400] for line in text if "GET /readyz" not in line and "GET /healthz" not in line]
        return f"--- last lines of {name}'s log ---\n" + "\n".join(kept[-lines:])

    def base(self, name: str) -> str:
        return self.running[name][1]

    def process(self, name: str) -> ManagedProcess:
        return self.running[name][0]


def _bake_kernels(cp: ControlPlane, objs: list[dict[str, Any]]) -> Path:
    """The image's build step (Dockerfile: `placer.warmup()` into GPUPLACE_NUMBA_BAKED_CACHE), here: the
    replicas then seed their writable cache from it and warm up in seconds, as pods of the image do,
    instead of both compiling every kernel at once on a loaded machine.

    Baked with the container's NUMBA_* settings (NUMBA_CPU_NAME=generic: Numba's cache key holds the
    CPU name, so the Makefile's host-CPU cache would not match), beside the Makefile's cache so that
    later runs reuse it."""
    numba_env = {
        e["name"]: e["value"]
        for e in chart.container_of(objs, "gpuplace-extender").get("env") or []
        if e["name"].startswith("NUMBA_") and e["name"] != "NUMBA_CACHE_DIR" and "value" in e
    }
    here = os.environ.get("NUMBA_CACHE_DIR")
    baked = Path(f"{here}-image") if here else cp.workdir / "numba-baked"
    code = "from placement_core import placer; placer.warmup()"
    env = {**os.environ, **numba_env, "NUMBA_CACHE_DIR": str(baked)}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=binaries.repo_root(), check=True, timeout=900)
    return baked


@pytest.fixture(scope="module")
def replicas(control_plane: ControlPlane, local_binaries: binaries.Binaries) -> Iterator[Replicas]:
    helm = chart.tool("helm")
    objs = chart.helm_template(helm)
    control_plane.kubectl("create", "namespace", chart.NAMESPACE, check=False)
    rbac = [o for o in objs if o["kind"] in RBAC]
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))

    async def token() -> accounts.ServiceAccountCredentials:
        async with control_plane.api_client() as api:
            return await accounts.service_account_token(
                api, namespace=chart.NAMESPACE, name="gpuplace", server=control_plane.server,
                ca_file=control_plane.ca_file, kubeconfig_path=control_plane.workdir / "kubeconfigs" / "ha.kubeconfig",
            )  # fmt: skip

    creds = asyncio.run(token())
    rs = Replicas(
        control_plane,
        objs,
        creds.kubeconfig,
        control_plane.workdir / "ha-numba-cache",
        _bake_kernels(control_plane, objs),
    )
    try:
        rs.start()
        rs.start()
        yield rs
    finally:
        for name in list(rs.running):
            control_plane.stop_process(name)
        control_plane.kubectl(
            "-n", chart.NAMESPACE, "delete", "lease", "gpuplace-extender", "--ignore-not-found", check=False
        )


@pytest.fixture(scope="module")
def service(replicas: Replicas) -> Iterator[ServiceProxy]:
    with ServiceProxy([base for _, base in replicas.running.values()]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def ha_scheduler(
    control_plane: ControlPlane, replicas: Replicas, service: ServiceProxy
) -> Iterator[ManagedProcess]:
    """kube-scheduler with the chart's extender entry (ConfigMap gpuplace-kube-scheduler), through the proxy."""
    cm = chart.rendered(replicas.objs, "ConfigMap", "gpuplace-kube-scheduler")
    cfg = yaml.safe_load(cm["data"]["extender.yaml"])
    (entry,) = cfg["extenders"]
    entry["urlPrefix"] = f"{service.url}/scheduler"
    cfg["profiles"] = [{"schedulerName": SCHEDULER}]  # its own name: other modules' schedulers never race it
    process = control_plane.start_scheduler(cfg, name="kube-scheduler-ha")
    yield process
    control_plane.stop_process(process.name)


async def _wait_leader(rs: Replicas, *, within: float, exclude: str | None = None) -> str:
    async def one() -> str | None:
        ready = await asyncio.to_thread(rs.ready)
        return ready[0] if len(ready) == 1 and ready[0] != exclude else None

    try:
        return await wait_until(
            one, within=within, interval=0.1, what="exactly one Ready extender replica (the leader)"
        )
    except WaitTimeoutError as e:
        raise WaitTimeoutError(f"{e}\n{await asyncio.to_thread(rs.describe)}") from e


async def _wait_standby(rs: Replicas, *, within: float = 120) -> str:
    """A warm follower, so a takeover measures the lease, not a replica's start-up."""

    async def one() -> str | None:
        warm = await asyncio.to_thread(rs.warm_followers)
        return warm[0] if warm else None

    return await wait_until(one, within=within, interval=0.2, what="a warm follower replica")


def _gpu_pod(name: str, namespace: str, gpus: int, *, scheduler: str = SCHEDULER) -> dict[str, Any]:
    body = pod_manifest(
        name, gpus=gpus, gpu_requests=True, tolerate_gpu_taint=True, node_selector=owner(namespace)
    )
    body["spec"]["schedulerName"] = scheduler
    return body


@pytest.fixture
async def nodes(node_factory: NodeFactory, namespace: str) -> list[str]:
    return [await node_factory("hgx-h100", labels=owner(namespace), topology=True) for _ in range(4)]


async def test_sigkill_leader_mid_workload_follower_takes_over(
    replicas: Replicas, ha_scheduler: ManagedProcess, service: ServiceProxy, k8s: client.ApiClient,
    namespace: str, nodes: list[str], e2e_report: Any,
) -> None:  # fmt: skip
    leader = await _wait_leader(replicas, within=120)
    sizes = [1, 2, 1, 4, 1, 2, 1, 1, 2, 4, 1, 2, 1, 1, 2, 1, 4]  # 31 of the 4 nodes' 32 GPUs
    names = [f"w{i}" for i in range(len(sizes))]
    created: list[str] = []
    problems: list[str] = []

    async def stream() -> None:
        for name, gpus in zip(names, sizes, strict=True):
            await create_pod(k8s, namespace, _gpu_pod(name, namespace, gpus))
            created.append(name)
            audit = await audit_namespaces(k8s, namespace)  # the invariant, during the scenario
            problems.extend(audit.problems)
            await asyncio.sleep(0.15)

    await _wait_standby(replicas)
    feeder = asyncio.create_task(stream())
    await wait_until(
        lambda: _bound_count(k8s, namespace, 4), within=90, what="four pods bound by the first leader"
    )
    assert replicas.process(leader).alive(), "the leader exited before the kill\n" + replicas.log_tail(leader)
    os.kill(replicas.process(leader).pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The takeover time is a measurement (reported below; ~15-17 s here with the default lease), not
    # the assertion: a wall-clock bound this close to the lease duration flakes on a loaded machine.
    follower = await _wait_leader(replicas, within=60, exclude=leader)
    takeover = time.monotonic() - killed_at
    await feeder
    await wait_bound(k8s, namespace, names, within=120)
    audit = await audit_namespaces(k8s, namespace)
    assert not problems and audit.ok, problems + audit.problems
    assert audit.gpu_pods == len(names) == audit.with_record
    assert replicas.process(leader).popen.wait(5) == -signal.SIGKILL, replicas.log_tail(leader)
    assert follower != leader
    e2e_report(
        f"HA failover: SIGKILL of the extender leader -> follower Ready after {takeover:.1f}s "
        f"(lease 15s / renew 10s / retry 2s); {len(names)} pods ({sum(sizes)} GPUs) all bound, audit clean"
    )
    replicas.running.pop(leader)
    replicas.start()  # the Deployment's replacement pod: a follower


async def _bound_count(k8s: client.ApiClient, namespace: str, n: int) -> bool:
    pods = await client.CoreV1Api(k8s).list_namespaced_pod(namespace)
    return sum(1 for p in pods.items if p.spec.node_name) >= n


def _http(sock: socket.socket, method: str, path: str, body: bytes = b"") -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: gpuplace\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data  # closed (b"" when nothing was answered)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


async def test_sigstopped_leader_that_lost_its_lease_never_binds(
    replicas: Replicas, k8s: client.ApiClient, namespace: str, nodes: list[str], e2e_report: Any
) -> None:
    leader = await _wait_leader(replicas, within=120)
    await _wait_standby(replicas)
    # A pod no scheduler picks up, so only the request below could bind it.
    pod = await create_pod(k8s, namespace, _gpu_pod("held", namespace, 1, scheduler="nobody"))
    host, port = replicas.base(leader).rsplit("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    try:
        _http(sock, "GET", "/healthz")  # a keep-alive connection, as kube-scheduler holds one
        assert b" 200 " in _read_response(sock).split(b"\r\n", 1)[0]
        os.kill(replicas.process(leader).pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        args = {"PodName": "held", "PodNamespace": namespace, "PodUID": pod.metadata.uid, "Node": nodes[0]}
        _http(sock, "POST", "/scheduler/bind", orjson.dumps(args))  # sits in the socket until SIGCONT
        new_leader = await _wait_leader(replicas, within=60, exclude=leader)
        takeover = time.monotonic() - stopped_at
        os.kill(replicas.process(leader).pid, signal.SIGCONT)
        answer = await asyncio.to_thread(_read_response, sock)
    finally:
        sock.close()
    assert answer == b"", f"the old leader answered after losing its lease: {answer[:300]!r}"
    status = await asyncio.to_thread(replicas.process(leader).popen.wait, 60)
    assert status == 1, replicas.log_tail(leader)  # lost the lease: exits, to come back as a follower
    held = await client.CoreV1Api(k8s).read_namespaced_pod("held", namespace)
    assert not held.spec.node_name, f"bound to {held.spec.node_name} by a replica that had lost its lease"
    assert (await asyncio.to_thread(replicas.ready)) == [new_leader]
    e2e_report(
        f"HA SIGSTOP: follower Ready {takeover:.1f}s after the leader stopped; after SIGCONT the old leader "
        "closed the pending bind unanswered, bound nothing and exited (status 1)"
    )
    replicas.running.pop(leader)
    replicas.start()


@pytest.fixture(autouse=True)
async def _no_stopped_processes(replicas: Replicas) -> AsyncIterator[None]:
    yield
    for process, _ in replicas.running.values():  # never leave a SIGSTOPped replica behind
        if process.alive():
            os.kill(process.pid, signal.SIGCONT)
