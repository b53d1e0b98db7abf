"""What a pod asks of DRA GPUs: the GPU requests of its ResourceClaims, as far as gpuplace reads them.

A claim request is GPU demand when its (sub)request names a DeviceClass of `dra.device_classes`
(NVIDIA's `gpu.nvidia.com` → whole GPUs, `mig.nvidia.com` → MIG devices). What is read, honestly:
- `allocationMode: ExactCount` with `count`, and `All` (every matching device of the node);
- `firstAvailable`: the subrequests in order, the first one the node can serve counts (as the
  allocator tries them: k8s.io/dynamic-resource-allocation structured allocator, `allocateOne`);
- CEL selectors of exactly these forms (any quoting): `device.attributes["gpu.nvidia.com"].profile
  == "1g.10gb"`, `….productName == "…"`, `….type == "gpu"`, joined by `&&`. Any other selector makes
  the request `understood = False`: gpuplace then cannot tell which devices match, so filter passes
  every node for the pod (kube-scheduler's DynamicResources filter, which runs first, decided already)
  and only scores;
- `matchAttribute: resource.kubernetes.io/pcieRoot` constraints on one request: its devices come from
  one PCIe root. Such a constraint across several requests, and other constraints (distinctAttribute,
  other attributes), are not read (`understood = False`);
- `capacity.requests` (DRAConsumableCapacity) on a shareable device;
- `adminAccess` requests are not demand (they consume nothing).
A claim already allocated is not demand either: it holds its devices, on its node (`allocated_on`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from scheduler.dra.objects import ALL, PCIE_ROOT, Claim

_TERM = re.compile(
    r"""^\s*\(?\s*device\.attributes\[\s*["']([^"']+)["']\s*\]\.(\w+)\s*==\s*["']([^"']*)["']\s*\)?\s*$"""
)
_DRIVER = re.compile(r"""^\s*device\.driver\s*==\s*["']([^"']+)["']\s*$""")


@dataclass(frozen=True, slots=True)
class DraRequest:
    """One way to serve one claim request on a node."""

    claim: str  # namespace/name
    name: str  # as allocation results name it: "<request>" or "<request>/<subrequest>"
    kind: str  # "gpu" | "mig"
    count: int  # 0: All
    attrs: tuple[tuple[str, str], ...] = ()  # attribute equalities from the selectors
    same_pcie_root: bool = False
    capacity: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class DraDemand:
    requests: tuple[tuple[DraRequest, ...], ...] = ()  # per claim request: its alternatives, in order
    allocated_on: tuple[tuple[str, str], ...] = ()  # (claim, node) of claims already allocated
    missing: tuple[str, ...] = ()  # claims referenced but not (yet) known
    understood: bool = True  # every selector and constraint was read (see the module docstring)
    pcie_groups: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())  # (claim, requests) one root

    @property
    def gpus(self) -> int:
        """Whole GPUs asked for by the first alternative of each request (All counts as 1)."""
        return sum(max(1, alts[0].count) for alts in self.requests if alts and alts[0].kind == "gpu")

    @property
    def mig(self) -> tuple[str, int] | None:
        """(profile, count) when every request is a MIG request of one profile."""
        firsts = [alts[0] for alts in self.requests if alts]
        profiles = {dict(r.attrs).get("profile") for r in firsts}
        if not firsts or any(r.kind != "mig" for r in firsts) or len(profiles) != 1 or None in profiles:
            return None
        return str(profiles.pop()), sum(max(1, r.count) for r in firsts)


def _selectors(exprs: tuple[str, ...], drivers: frozenset[str]) -> tuple[tuple[tuple[str, str], ...], bool]:
    attrs: list[tuple[str, str]] = []
    understood = True
    for e in exprs:
        for term in e.split("&&"):
            m = _TERM.match(term)
            if m and m.group(1) in drivers and m.group(2) in ("profile", "productName", "type"):
                attrs.append((m.group(2), m.group(3)))
            elif not ((d := _DRIVER.match(term.strip(" ()"))) and d.group(1) in drivers):
                understood = False
    return tuple(attrs), understood


def pod_demand(
    claims: list[Claim], missing: list[str], classes: dict[str, str], drivers: frozenset[str]
) -> DraDemand | None:
    """The GPU demand of a pod's claims (DraState.claims_of); None when none of them asks for GPUs."""
    reqs: list[tuple[DraRequest, ...]] = []
    allocated: list[tuple[str, str]] = []
    understood = True
    groups = []
    any_gpu = False
    for c in claims:
        gpu_here = any(a.device_class in classes for r in c.requests for a in r.alternatives)
        any_gpu |= gpu_here
        if not gpu_here:
            continue
        if c.allocated:
            allocated.append((c.key, c.node))
            continue
        pcie: set[str] = set()
        for k in c.constraints:
            named = set(k.requests) or {r.name for r in c.requests}
            if k.match_attribute == PCIE_ROOT and not k.distinct_attribute and len(named) == 1:
                pcie |= named
            else:
                understood = False
        if pcie:
            groups.append((c.key, tuple(sorted(pcie))))
        for r in c.requests:
            alts = []
            for a in r.alternatives:
                if a.admin:
                    continue
                kind = classes.get(a.device_class)
                if kind is None:
                    understood = False  # a non-GPU device class in a GPU claim: not ours to judge
                    continue
                attrs, ok = _selectors(a.selectors, drivers)
                understood &= ok
                alts.append(
                    DraRequest(
                        c.key,
                        a.name,
                        kind,
                        0 if a.mode == ALL else a.count,
                        attrs,
                        r.name in pcie,
                        tuple(sorted(a.capacity.items())),
                    )
                )
            if alts:
                reqs.append(tuple(alts))
    if not any_gpu and not missing:
        return None
    return DraDemand(tuple(reqs), tuple(allocated), tuple(missing), understood, tuple(groups))
