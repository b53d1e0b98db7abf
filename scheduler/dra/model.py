"""DRA in the cluster model: a node's GPUs from its ResourceSlices, its claims' devices as allocations.

Mixed into scheduler.cache.ClusterCache. Two things, both recomputed for exactly the nodes a slice,
claim or pod event touched (DraState reports them):
- `_node_inventory(name)`: the Node object's inventory (scheduler.nodeinv), with its GPUs replaced by
  the slices' when a counted pool describes the node (precedence: scheduler.dra.inventory);
- `_sync_dra(name)`: everything the node's holding claims take, as ONE allocation under the key
  `dra:<node>` (whole GPUs for devices, shares and partitions; static MIG slots as slots). One key per
  node, not per claim, because several claims may share one GPU (consumable capacity, partitions)
  while ClusterState books a GPU once. It collides only with guesses for device-plugin pods counted by
  totals on the same GPUs, and guesses yield to it as to any exact record.
The invariants of the claims themselves (a device held twice, counters exceeded) are the ledger's
(`DraState.problems`), not ClusterState's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from placement_core import ClusterState, DoubleBookingError, Placement
from scheduler.dra.inventory import from_annotation, node_spec
from scheduler.dra.state import DraState
from scheduler.nodeinv import NodeInventory

if TYPE_CHECKING:
    from scheduler.cache import CacheHooks

log = logging.getLogger("gpuplace.scheduler.dra")
KEY_PREFIX = "dra:"


class DraModel:
    """The DRA methods of ClusterCache (which provides these attributes)."""

    state: ClusterState
    hooks: CacheHooks
    dra: DraState | None
    _base: dict[str, NodeInventory]

    if TYPE_CHECKING:  # ClusterCache's

        def _regroup_guesses(self, node: str, uid: str, exact: Placement) -> bool: ...

        def _install(self, name: str, inv: NodeInventory, *, quiet: bool = False) -> None: ...

    def _node_inventory(self, name: str) -> NodeInventory:
        base = self._base[name]
        nd = self.dra.devices(name) if self.dra is not None else None
        if nd is None:
            return base
        annotated = base.spec if base.source == "annotation" else None
        links, healthy, warning = from_annotation(nd, annotated, base.gpu_uuids)
        try:
            spec = node_spec(nd, base.spec, links=links, healthy=healthy)
        except ValueError as e:
            return NodeInventory(
                base.spec, base.gpu_uuids, base.mig_uuids, base.source, f"{e}; using the Node object"
            )
        mig_uuids = {
            (m.gpu, m.slot): str(m.device.attr("uuid") or "") for m in nd.mig.values() if m.slot >= 0
        }
        warn = "; ".join(w for w in (base.warning, warning) if w) or None
        return NodeInventory(spec, nd.uuids(), {k: v for k, v in mig_uuids.items() if v}, "dra", warn)

    def dra_changed(self, nodes: set[str], *, hardware: bool = False) -> None:
        """Re-count the claims of `nodes` (after claim or pod events); `hardware`: their slices changed,
        so re-read their GPUs first."""
        if self.dra is not None:
            self.dra.changed(nodes)
        for name in sorted(nodes):
            if name in self._base:
                if hardware:
                    self._install(name, self._node_inventory(name), quiet=True)
                self._sync_dra(name)

    def _sync_dra(self, node: str) -> None:
        if self.dra is None or node not in self.state.index:
            return
        key = KEY_PREFIX + node
        p = self.dra.usage(node).placement(self.dra.devices(node))
        current = self.state.allocations.get(key)
        if current == p:
            return
        if current is not None:
            self.state.release(key)
        if not p.gpus and not p.mig:
            return
        try:
            self.state.allocate(key, p)
        except DoubleBookingError:
            if self._regroup_guesses(node, key, p):
                return
            self.state.allocate(key, p, check=False)
            log.warning("DRA claims on %s oversubscribe it (%s)", node, p)
            self.hooks.oversubscribed(node, key)
