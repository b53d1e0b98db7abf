"""The gang scenarios' rig (test_gang.py, test_gang_recovery.py): gpuplace with short gang timings, and
per test the namespace's own HGX H100 nodes grouped in NVLink cliques, gang members carrying the
webhook's keys, and the end-of-scenario audit of every bound pod's GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from gpuplace.localcluster import ControlPlane, audit
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import tail
from gpuplace.localcluster.workload import create_pod, node_names, pod_manifest
from tests.e2e.gangs import gangs
from tests.e2e.helpers import NodeFactory, audit_namespaces, owner

TTL = 20  # plan_ttl_seconds: an unfinished plan is released after this


@contextlib.contextmanager
def gang_gpuplace(control_plane: ControlPlane, ttl: float = TTL) -> Iterator[GpuplaceServer]:
    """`gpuplace serve` with gang timings short enough for a scenario (a plan lives `ttl` seconds)."""
    gang = {
        "plan_ttl_seconds": ttl,
        "backoff_seconds": 5,
        "barrier_seconds": 8,
        "podgroup_recheck_seconds": 1,
    }
    with GpuplaceServer(control_plane, settings={"scheduler": {"gang": gang}}) as server:
        yield server


def member(gang: str, i: int, size: int, selector: dict[str, str], gpus: int = 8) -> dict[str, Any]:
    body = pod_manifest(f"{gang}-{i}", gpus=gpus, cpu="8", memory="64Gi", node_selector=selector)
    body["metadata"]["labels"] = {"gpuplace.io/gang": gang}
    body["metadata"]["annotations"] = {"gpuplace.io/gang-min-member": str(size)}
    return body


@dataclass(frozen=True, slots=True)
class GangRig:
    gp: GpuplaceServer
    k8s: client.ApiClient
    namespace: str
    node_factory: NodeFactory

    @property
    def mine(self) -> dict[str, str]:
        """The label this test's nodes carry: a node selector that keeps its pods on them."""
        return owner(self.namespace)

    async def cliques(self, sizes: dict[str, int]) -> dict[str, str]:
        """node → clique, `sizes[c]` HGX H100 nodes per clique."""
        out = {}
        for c, n in sizes.items():
            for _ in range(n):
                name = await self.node_factory(
                    "hgx-h100", labels=self.mine, topology=True, clique=f"cluster-{c}.0"
                )
                out[name] = c
        return out

    async def create(self, body: dict[str, Any]) -> None:
        await create_pod(self.k8s, self.namespace, body)

    async def gang(self, name: str, size: int, *, gpus: int = 8, order: list[int] | None = None) -> list[str]:
        """Create members `order` (default: all, in index order) of gang `name` of `size`; their names."""
        for i in range(size) if order is None else order:
            await self.create(member(name, i, size, self.mine, gpus))
        return [f"{name}-{i}" for i in range(size)]

    async def bound(self) -> dict[str, str | None]:
        """pod → node (None while pending) of every pod in the namespace."""
        return await node_names(self.k8s, self.namespace)

    async def none_bound(self) -> bool:
        return not any((await self.bound()).values())

    def state(self) -> str:
        """What gpuplace knows now, for a failing assertion's message: /debug/gangs and its log tail."""
        log = tail(self.gp.process.log_file) if self.gp.process is not None else ""
        return f"/debug/gangs: {gangs(self.gp)}\n{log}"

    async def audited(self) -> audit.Audit:
        """The end-of-scenario audit (each GPU held once, every bound GPU pod carries its record)."""
        result = await audit_namespaces(self.k8s, self.namespace)
        assert result.ok, result.problems
        return result
