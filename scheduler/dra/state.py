"""What the cache keeps of DRA: the slices, the claims, each node's devices and what its claims hold.

Fed by two reflectors ("resourceslices", "resourceclaims": scheduler.service) with the same list+watch
machinery as nodes and pods, so a restart rebuilds it from the API server like everything else. Every
change reports the nodes it touched; the cache then re-reads those nodes' GPUs (`devices`) and
re-projects what their claims hold (`usage`) into its ClusterState (scheduler.cache).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from scheduler.dra.inventory import NodeDevices, counted_pools, node_devices
from scheduler.dra.ledger import NodeUsage, usage
from scheduler.dra.objects import Claim, DraObjectError, Slice, parse_claim, parse_slice
from scheduler.dra.packed import PackedDevices
from scheduler.wire import Pod

log = logging.getLogger("gpuplace.scheduler.dra")


class DraState:
    """`pod_node(uid)`: the node a pod is bound to, if the cache knows; `pod_gone(uid)`: True only when
    the pod is known to be deleted or finished (never for a pod the cache has not listed yet)."""

    def __init__(
        self,
        drivers: Iterable[str],
        *,
        pod_node: Callable[[str], str | None] = lambda uid: None,
        pod_gone: Callable[[str], bool] = lambda uid: False,
    ) -> None:
        self.drivers = frozenset(drivers)
        self.pod_node = pod_node
        self.pod_gone = pod_gone
        self.slices: dict[str, Slice] = {}
        self.claims: dict[str, Claim] = {}  # by UID
        self._by_name: dict[tuple[str, str], str] = {}
        self._counted: dict[tuple[str, str], tuple[str, list[Slice]]] = {}  # pool → (node, its slices)
        self._devices: dict[str, NodeDevices] = {}
        self._claim_node: dict[str, str] = {}  # claim UID → node it holds devices on
        self._node_claims: dict[str, set[str]] = {}  # node → claim UIDs placed there
        self._by_pod: dict[str, set[str]] = {}  # pod UID → claims reserved for it
        self._pools: dict[tuple[str, str], dict[str, Slice]] = {}  # (driver, pool) → its slices by name
        self._node_pools: dict[str, set[tuple[str, str]]] = {}  # node → pools counted for it
        self._usage: dict[str, NodeUsage] = {}  # memo, dropped by `changed`
        self.version = 0  # moves on every slice, claim or pod change that reaches DRA
        self._packed = PackedDevices()  # the same, as arrays for the verbs (`packed`)
        self.warnings = 0

    # ---- slices ----------------------------------------------------------------------------------
    def _put(self, sl: Slice) -> None:
        self.slices[sl.name] = sl
        self._pools.setdefault((sl.driver, sl.pool), {})[sl.name] = sl

    def _drop(self, name: str) -> Slice | None:
        old = self.slices.pop(name, None)
        if old is not None:
            group = self._pools.get((old.driver, old.pool), {})
            group.pop(name, None)
            if not group:
                self._pools.pop((old.driver, old.pool), None)
        return old

    def apply_slice(self, etype: str, obj: dict[str, Any]) -> set[str]:
        """A slice event; returns the nodes whose devices changed."""
        self.version += 1
        name = str((obj.get("metadata") or {}).get("name") or "")
        old = self._drop(name)
        pools = {(old.driver, old.pool)} if old is not None else set()
        if etype != "DELETED":
            s = self._parse(obj)
            if s is not None:
                self._put(s)
                pools.add((s.driver, s.pool))
        return self._touch(self._recount(pools))

    def _parse(self, obj: dict[str, Any]) -> Slice | None:
        try:
            s = parse_slice(obj)
        except (DraObjectError, AttributeError, TypeError, ValueError) as e:  # odd JSON: never stop the watch
            log.warning("%s; ignoring it", e)
            self.warnings += 1
            return None
        return s if s.driver in self.drivers else None

    def replace_slices(self, items: Iterable[dict[str, Any]]) -> set[str]:
        self.version += 1
        before = set(self._devices)
        self.slices.clear()
        self._pools.clear()
        for obj in items:
            s = self._parse(obj)
            if s is not None:
                self._put(s)
        self._counted.clear()
        self._node_pools.clear()
        self._devices.clear()
        self._packed.reset()
        return self._touch(self._recount(set(self._pools)) | before)

    def _recount(self, pools: set[tuple[str, str]]) -> set[str]:
        """Recount the given pools; the nodes whose counted devices may have changed."""
        touched: set[str] = set()
        for p in pools:
            old = self._counted.pop(p, None)
            if old is not None:
                touched.add(old[0])
                self._node_pools.get(old[0], set()).discard(p)
            group = list(self._pools.get(p, {}).values())
            for node, slices in counted_pools(group, self.drivers).items():
                self._counted[p] = (node, slices)
                self._node_pools.setdefault(node, set()).add(p)
                touched.add(node)
        for node in touched:
            mine = [s for p in sorted(self._node_pools.get(node, ())) for s in self._counted[p][1]]
            if mine:
                self._devices[node] = node_devices(node, mine)
            else:
                self._devices.pop(node, None)
                self._node_pools.pop(node, None)
        self._packed.devices_changed(touched)
        return touched

    def devices(self, node: str) -> NodeDevices | None:
        """The node's DRA GPUs, or None when no counted pool describes it."""
        nd = self._devices.get(node)
        return nd if nd is not None and nd.gpus else None

    # ---- claims ----------------------------------------------------------------------------------
    def _place(self, uid: str, node: str) -> None:
        old = self._claim_node.pop(uid, "")
        if old:
            self._node_claims[old].discard(uid)
            if not self._node_claims[old]:
                del self._node_claims[old]
        if node:
            self._claim_node[uid] = node
            self._node_claims.setdefault(node, set()).add(uid)

    def apply_claim(self, etype: str, obj: dict[str, Any]) -> set[str]:
        """A claim event; returns the nodes whose held devices may have changed."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        touched = set()
        old = self.claims.pop(uid, None)
        if old is not None:
            self._by_name.pop((old.namespace, old.name), None)
            for pod in old.reserved_for:
                self._by_pod.get(pod, set()).discard(uid)
                if not self._by_pod.get(pod, True):
                    del self._by_pod[pod]
        if uid in self._claim_node:
            touched.add(self._claim_node[uid])
            self._place(uid, "")
        if etype == "DELETED":
            return self._touch(touched)
        try:
            c = parse_claim(obj)
        except (DraObjectError, AttributeError, TypeError, ValueError) as e:  # odd JSON: never stop the watch
            log.warning("%s; ignoring it", e)
            self.warnings += 1
            return self._touch(touched)
        self.claims[uid] = c
        self._by_name[(c.namespace, c.name)] = uid
        for pod in c.reserved_for:
            self._by_pod.setdefault(pod, set()).add(uid)
        node = self.node_of(c)
        if node:
            self._place(uid, node)
            touched.add(node)
        return self._touch(touched)

    def replace_claims(self, items: Iterable[dict[str, Any]]) -> set[str]:
        touched = set(self._claim_node.values())
        self.claims.clear()
        self._by_name.clear()
        self._claim_node.clear()
        self._node_claims.clear()
        self._by_pod.clear()
        for obj in items:
            touched |= self.apply_claim("ADDED", obj)
        return touched

    def node_of(self, c: Claim) -> str:
        """Where an allocated claim holds its devices: its nodeSelector's node, else a reserving pod's."""
        if not c.allocated or not c.results:
            return ""
        if c.node:
            return c.node
        for uid in c.reserved_for:
            node = self.pod_node(uid)
            if node:
                return node
        return ""

    def holds(self, c: Claim) -> bool:
        """An allocated claim holds its devices until deallocated, or until every pod it is reserved
        for is known to be gone (scheduler.dra.ledger)."""
        if not c.allocated:
            return False
        return not (c.reserved_for and all(self.pod_gone(u) for u in c.reserved_for))

    def holding(self, node: str) -> list[Claim]:
        """The claims holding devices on `node` now."""
        cs = (self.claims[u] for u in self._node_claims.get(node, ()))
        return [c for c in cs if self.holds(c)]

    def usage(self, node: str) -> NodeUsage:
        u = self._usage.get(node)
        if u is None:
            u = self._usage[node] = usage(node, self._devices.get(node), self.holding(node))
        return u

    def _touch(self, nodes: set[str]) -> set[str]:
        self.changed(nodes)
        return nodes

    def changed(self, nodes: Iterable[str]) -> None:
        """Forget the usage of `nodes` (their claims, devices or reserving pods changed)."""
        self.version += 1
        nodes = list(nodes)
        for n in nodes:
            self._usage.pop(n, None)
        self._packed.usage_changed(nodes)

    def packed(self) -> PackedDevices:
        """Every node's devices and usage as placement_core.devicefit arrays, brought up to date."""
        self._packed.refresh(self._devices, self.usage)
        return self._packed

    def nodes_with_claims(self) -> set[str]:
        return set(self._node_claims)

    def reserved(self, pod_uid: str) -> bool:
        return pod_uid in self._by_pod

    def rebind(self, pod_uid: str) -> set[str]:
        """A pod's node or liveness changed: re-place the claims reserved for it; the nodes touched."""
        return self._rebind(self._by_pod.get(pod_uid, set()))

    def rebind_all(self) -> set[str]:
        return self._rebind(set(self.claims))

    def _rebind(self, uids: set[str]) -> set[str]:
        touched = set()
        for uid in uids:
            old, node = self._claim_node.get(uid, ""), self.node_of(self.claims[uid])
            touched |= {n for n in (old, node) if n}
            if node != old:
                self._place(uid, node)
        return self._touch(touched)

    # ---- pods ------------------------------------------------------------------------------------
    def claim(self, namespace: str, name: str) -> Claim | None:
        uid = self._by_name.get((namespace, name))
        return self.claims.get(uid) if uid else None

    def claims_of(self, pod: Pod) -> tuple[list[Claim], list[str]]:
        """The pod's ResourceClaims (spec.resourceClaims by name, or the claim generated from a template
        as status.resourceClaimStatuses names it; plus status.extendedResourceClaimStatus), and the
        names of those not known (yet)."""
        ns = pod.metadata.namespace
        found, missing = [], []
        for name in claim_names(pod):
            c = self.claim(ns, name) if name else None
            if c is not None:
                found.append(c)
            else:
                missing.append(name or "a claim from a ResourceClaimTemplate (not created yet)")
        return found, missing

    def problems(self) -> list[str]:
        """Every ledger violation on every node (the invariant audit)."""
        out: list[str] = []
        for node in sorted(self.nodes_with_claims()):
            out.extend(self.usage(node).problems)
        return out


def claim_names(pod: Pod) -> list[str]:
    """Names of the ResourceClaims a pod uses (pod.spec.resourceClaims, in order; a template's claim
    once kube-controller-manager has created it and written its name into status.resourceClaimStatuses;
    then the extended-resource claim kube-scheduler created, status.extendedResourceClaimStatus)."""
    generated = {s.name: s.resource_claim_name for s in pod.status.resource_claim_statuses}
    names = []
    for ref in pod.spec.resource_claims:
        if ref.resource_claim_name:
            names.append(ref.resource_claim_name)
        elif generated.get(ref.name):
            names.append(str(generated[ref.name]))
        else:
            names.append("")  # template claim not created yet
    ext = pod.status.extended_resource_claim_status
    if ext is not None and ext.resource_claim_name:
        names.append(ext.resource_claim_name)
    return names
