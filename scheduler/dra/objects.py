"""resource.k8s.io/v1 objects (raw JSON as kube-apiserver returns them) → small frozen dataclasses.

Field names and shapes follow k8s.io/api v0.36.3 `resource/v1/types.go` (ResourceSliceSpec,
ResourcePool, CounterSet, Device, DeviceCounterConsumption, DeviceAttribute, DeviceCapacity,
ResourceClaimSpec, DeviceRequest, ExactDeviceRequest, DeviceSubRequest, DeviceConstraint,
ResourceClaimStatus, AllocationResult, DeviceRequestAllocationResult, ResourceClaimConsumerReference).
Since v1.35 a slice carries either `devices` or `sharedCounters`, never both ("Only one of Devices and
SharedCounters can be set"), so a pool's counter sets may live in another slice of the same pool.

Why parse at all instead of reading dicts in place: the cache keeps thousands of these, the ledger
compares them, and a malformed object (a quantity that does not parse, a slice without a pool) must
become a clear `DraObjectError` once, at the watch, not a KeyError somewhere in a verb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from placement_core.quantity import QuantityError, parse_quantity

PCIE_ROOT = "resource.kubernetes.io/pcieRoot"  # k8s.io/dynamic-resource-allocation/deviceattribute
EXACT_COUNT, ALL = "ExactCount", "All"  # DeviceAllocationMode


class DraObjectError(ValueError):
    """A ResourceSlice or ResourceClaim that cannot be read; the message names the object."""


def _qty(value: Any, what: str) -> Decimal:
    try:
        return parse_quantity(value if isinstance(value, int | float) else str(value))
    except QuantityError as e:
        raise DraObjectError(f"{what}: {e}") from None


def attribute_value(raw: Any) -> str | int | bool | None:
    """One DeviceAttribute (`{"string": ...}`, `{"int": ...}`, `{"bool": ...}`, `{"version": ...}`)
    as a plain value; list-valued attributes (`strings`, `ints`, ...) are kept as a tuple string."""
    if not isinstance(raw, dict):
        return None
    for key in ("string", "version", "int", "bool"):
        if key in raw and raw[key] is not None:
            v = raw[key]
            return v if isinstance(v, bool | int) else str(v)
    return None


@dataclass(frozen=True, slots=True)
class Device:
    """One published device (resource/v1 `Device`). Attribute keys keep their published spelling:
    NVIDIA's driver publishes unqualified names (`uuid`, `productName`, `type`, `parentUUID`, `profile`)
    and the standard `resource.kubernetes.io/pcieRoot`; a driver-qualified key (`gpu.nvidia.com/uuid`)
    is read as the unqualified one, as CEL's `device.attributes[driver]` does."""

    name: str
    attributes: dict[str, str | int | bool]
    capacity: dict[str, Decimal]
    consumes: tuple[tuple[str, tuple[tuple[str, Decimal], ...]], ...] = ()  # (counterSet, counters)
    multiple: bool = False  # allowMultipleAllocations (DRAConsumableCapacity)
    node: str = ""  # per-device nodeName (perDeviceNodeSelection pools)

    def attr(self, key: str) -> str | int | bool | None:
        return self.attributes.get(key)

    @property
    def kind(self) -> str:
        """NVIDIA's `type` attribute: "gpu", "mig", "vfio"…; "" when absent."""
        return str(self.attributes.get("type", ""))


@dataclass(frozen=True, slots=True)
class Slice:
    """One ResourceSlice (resource/v1 `ResourceSliceSpec`)."""

    name: str
    driver: str
    pool: str
    generation: int
    slice_count: int
    node: str  # spec.nodeName; "" for node-selector / all-nodes pools (not read by gpuplace)
    per_device_nodes: bool
    devices: tuple[Device, ...] = ()
    counters: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # sharedCounters by set name


def _device(raw: dict[str, Any], driver: str, where: str) -> Device:
    name = str(raw.get("name") or "")
    if not name:
        raise DraObjectError(f"{where}: a device without a name")
    attrs: dict[str, str | int | bool] = {}
    prefix = driver + "/"
    for key, val in (raw.get("attributes") or {}).items():
        v = attribute_value(val)
        if v is not None:
            attrs[key.removeprefix(prefix)] = v
    cap = {
        str(k).removeprefix(prefix): _qty((v or {}).get("value", 0), f"{where}: device {name} capacity {k}")
        for k, v in (raw.get("capacity") or {}).items()
    }
    consumes = tuple(
        (
            str(c.get("counterSet") or ""),
            tuple(
                sorted(
                    (str(k), _qty((v or {}).get("value", 0), f"{where}: device {name} counter {k}"))
                    for k, v in (c.get("counters") or {}).items()
                )
            ),
        )
        for c in raw.get("consumesCounters") or []
    )
    return Device(
        name, attrs, cap, consumes, bool(raw.get("allowMultipleAllocations")), str(raw.get("nodeName") or "")
    )


def parse_slice(obj: dict[str, Any]) -> Slice:
    """A ResourceSlice as the API returns it; raises DraObjectError naming the slice."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = str(meta.get("name") or "")
    where = f"ResourceSlice {name}"
    pool = spec.get("pool") or {}
    driver = str(spec.get("driver") or "")
    if not name or not driver or not pool.get("name"):
        raise DraObjectError(f"{where}: needs metadata.name, spec.driver and spec.pool.name")
    try:
        generation, count = int(pool.get("generation") or 0), int(pool.get("resourceSliceCount") or 0)
    except (TypeError, ValueError):
        raise DraObjectError(f"{where}: pool generation/resourceSliceCount are not integers") from None
    counters = {
        str(cs.get("name") or ""): {
            str(k): _qty((v or {}).get("value", 0), f"{where}: counter set {cs.get('name')} {k}")
            for k, v in (cs.get("counters") or {}).items()
        }
        for cs in spec.get("sharedCounters") or []
    }
    return Slice(
        name,
        driver,
        str(pool["name"]),
        generation,
        count,
        str(spec.get("nodeName") or ""),
        bool(spec.get("perDeviceNodeSelection")),
        tuple(_device(d, driver, where) for d in spec.get("devices") or []),
        counters,
    )


# ---- claims --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alternative:
    """One way to satisfy a request: `exactly`, or one `firstAvailable` subrequest (in order)."""

    name: str  # the request name, or "<request>/<subrequest>" as allocation results name it
    device_class: str
    selectors: tuple[str, ...]  # CEL expressions
    mode: str = EXACT_COUNT
    count: int = 1
    admin: bool = False
    capacity: dict[str, Decimal] = field(default_factory=dict)  # capacity.requests


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    alternatives: tuple[Alternative, ...]  # one for `exactly`, several for `firstAvailable`


@dataclass(frozen=True, slots=True)
class Constraint:
    requests: tuple[str, ...]  # empty: all requests
    match_attribute: str = ""
    distinct_attribute: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """One allocated device (resource/v1 `DeviceRequestAllocationResult`)."""

    request: str
    driver: str
    pool: str
    device: str
    admin: bool = False
    share: str = ""  # shareID: set when the device allows multiple allocations
    consumed: tuple[tuple[str, Decimal], ...] = ()  # consumedCapacity

    @property
    def key(self) -> tuple[str, str, str]:
        return self.driver, self.pool, self.device


@dataclass(frozen=True, slots=True)
class Claim:
    uid: str
    namespace: str
    name: str
    requests: tuple[Request, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    results: tuple[Result, ...] = ()  # status.allocation.devices.results; () = not allocated
    allocated: bool = False
    node: str = ""  # from status.allocation.nodeSelector (metadata.name / hostname term), if any
    reserved_for: tuple[str, ...] = ()  # UIDs of status.reservedFor pods
    deleting: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _alternative(raw: dict[str, Any], name: str, where: str) -> Alternative:
    mode = str(raw.get("allocationMode") or EXACT_COUNT)
    if mode not in (EXACT_COUNT, ALL):
        raise DraObjectError(f"{where}: request {name}: allocationMode {mode!r}")
    try:
        n = int(raw.get("count") or 1)
    except (TypeError, ValueError):
        raise DraObjectError(f"{where}: request {name}: count is not an integer") from None
    sel = tuple(
        str((s.get("cel") or {}).get("expression") or "") for s in raw.get("selectors") or [] if s.get("cel")
    )
    cap = {
        str(k): _qty(v, f"{where}: request {name} capacity {k}")
        for k, v in ((raw.get("capacity") or {}).get("requests") or {}).items()
    }
    return Alternative(
        name, str(raw.get("deviceClassName") or ""), sel, mode, n, bool(raw.get("adminAccess")), cap
    )


def node_of_selector(selector: dict[str, Any] | None) -> str:
    """The node an allocation's nodeSelector pins: kube-scheduler's allocator writes one term with
    `matchFields: metadata.name In [node]` for node-local devices (k8s.io/dynamic-resource-allocation
    structured/allocator.go, `createNodeSelector`). "" when it pins none."""
    for term in (selector or {}).get("nodeSelectorTerms") or []:
        for req in (term.get("matchFields") or []) + (term.get("matchExpressions") or []):
            key = req.get("key")
            values = req.get("values") or []
            if (
                key in ("metadata.name", "kubernetes.io/hostname")
                and req.get("operator") == "In"
                and len(values) == 1
            ):
                return str(values[0])
    return ""


def parse_claim(obj: dict[str, Any]) -> Claim:
    """A ResourceClaim as the API returns it; raises DraObjectError naming the claim."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    uid, ns, name = str(meta.get("uid") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or "")
    where = f"ResourceClaim {ns}/{name}"
    if not uid or not name:
        raise DraObjectError(f"{where}: needs metadata.uid and metadata.name")
    devices = spec.get("devices") or {}
    requests = []
    for r in devices.get("requests") or []:
        rname = str(r.get("name") or "")
        if r.get("exactly"):
            alts: tuple[Alternative, ...] = (_alternative(r["exactly"], rname, where),)
        else:
            alts = tuple(
                _alternative(s, f"{rname}/{s.get('name', '')}", where) for s in r.get("firstAvailable") or []
            )
        requests.append(Request(rname, alts))
    constraints = tuple(
        Constraint(
            tuple(str(x) for x in c.get("requests") or []),
            str(c.get("matchAttribute") or ""),
            str(c.get("distinctAttribute") or ""),
        )
        for c in devices.get("constraints") or []
    )
    alloc = status.get("allocation")
    results = tuple(
        Result(
            str(x.get("request") or ""),
            str(x.get("driver") or ""),
            str(x.get("pool") or ""),
            str(x.get("device") or ""),
            bool(x.get("adminAccess")),
            str(x.get("shareID") or ""),
            tuple(
                sorted(
                    (str(k), _qty(v, f"{where}: consumedCapacity {k}"))
                    for k, v in (x.get("consumedCapacity") or {}).items()
                )
            ),
        )
        for x in ((alloc or {}).get("devices") or {}).get("results") or []
    )
    reserved = tuple(
        str(c.get("uid") or "")
        for c in status.get("reservedFor") or []
        if c.get("resource") == "pods" and not c.get("apiGroup")
    )
    return Claim(
        uid,
        ns,
        name,
        tuple(requests),
        constraints,
        results,
        alloc is not None,
        node_of_selector((alloc or {}).get("nodeSelector")),
        reserved,
        bool(meta.get("deletionTimestamp")),
    )
