"""What a pod asks for, read from its Kubernetes JSON into a placement_core `GpuRequest`.

The inputs, in the order they are read (the full contract is in scheduler/README.md):
- `nvidia.com/gpu` (whole GPUs) and `nvidia.com/mig-<profile>` (MIG devices, one profile per pod) from
  container requests, or limits when requests are absent (for extended resources the API server
  forces them equal);
- `gpuplace.io/gpu-milli`: a fractional share of one GPU in milli-GPU (1..1000);
- `gpuplace.io/gpu-models`: comma list of catalog names (`H100-80GB`) or GFD product strings;
  a `nodeSelector` on `nvidia.com/gpu.product` restricts models the same way (both: intersection);
- `gpuplace.io/gpu-memory-mib`: minimum memory per GPU;
- `gpuplace.io/nvlink`: required | preferred | none (default from settings);
- every resource as kube-scheduler counts it (scheduler.podresources: upstream `PodRequests` with v1.36's
  defaults — pod-level resources, sidecars, init containers, overhead, in-place resize).

Why so strict about malformed values: a pod with `gpu-milli: "half"` must fail scheduling with a
sentence that says so (the filter's in-band Error), not be placed as if the annotation were absent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from placement_core import MODELS, GpuRequest, NvlinkNeed, resolve_product
from scheduler.contract import Keys
from scheduler.podresources import ResourceError, pod_requests
from scheduler.settings import SchedulerSettings
from scheduler.wire import Pod

PRODUCT_LABEL = "nvidia.com/gpu.product"
_NVLINK = {"required": NvlinkNeed.REQUIRED, "preferred": NvlinkNeed.PREFERRED, "none": NvlinkNeed.NONE}
_MIB = Decimal(1 << 20)


class PodRequestError(ValueError):
    """The pod's GPU request cannot be understood; the message is shown to the user."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The parts of the settings that the request reader needs."""

    gpu_resource: str = "nvidia.com/gpu"
    mig_prefix: str = "nvidia.com/mig-"
    default_nvlink: NvlinkNeed = NvlinkNeed.PREFERRED
    keys: Keys = field(default_factory=Keys)

    @classmethod
    def from_settings(cls, s: SchedulerSettings) -> Rules:
        return cls(
            s.gpu_resource, s.mig_resource_prefix, _NVLINK[s.default_nvlink], Keys(s.annotation_prefix)
        )

    def annotations_read(self, annotations: dict[str, str]) -> tuple[str | None, ...]:
        """The values of the annotations `pod_request` reads (part of the cache's pod fingerprint)."""
        k = self.keys
        return tuple(annotations.get(key) for key in (k.gpu_milli, k.gpu_models, k.gpu_memory_mib, k.nvlink))

    def is_gpu_resource(self, name: str) -> bool:
        return name == self.gpu_resource or (bool(self.mig_prefix) and name.startswith(self.mig_prefix))


def _whole(v: Decimal, what: str) -> int:
    if v < 0 or v != v.to_integral_value():
        raise PodRequestError(f"{what} must be a whole number, got {v}")
    return int(v)


def _int_annotation(pod: Pod, key: str, lo: int, hi: int) -> int | None:
    raw = pod.metadata.annotations.get(key)
    if raw is None:
        return None
    try:
        v = int(raw.strip())
    except ValueError:
        raise PodRequestError(f"annotation {key}={raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise PodRequestError(f"annotation {key}={raw!r} must be between {lo} and {hi}")
    return v


def model_names(names: Iterable[str]) -> frozenset[str]:
    """Catalog names for user-given names: catalog names pass through, GFD products are resolved."""
    out = set()
    for raw in names:
        name = raw.strip()
        if name:
            out.add(name if name in MODELS else resolve_product(name).model.name)
    return frozenset(out)


def pod_request(pod: Pod, rules: Rules) -> GpuRequest:
    """The pod's GpuRequest; PodRequestError with a readable message when it is malformed.

    cpu/memory are counted, never fitted (`fit_cpu_memory=False`), and this is why:
    kube-scheduler's NodeResourcesFit (pkg/scheduler/framework/plugins/noderesources/fit.go, `Filter`) runs
    before the extender's filter and checks cpu, memory, hugepages and every other resource against its own
    node cache — exact, including the pods it has assumed but not yet bound and, in the dry runs, the
    nominated pods. Every node the extender is offered has already passed it. gpuplace's cpu/memory picture
    is the same arithmetic (scheduler.podresources) but fed by a watch that lags kube-scheduler's cache, so a
    second check can only disagree in one direction: reject a node kube-scheduler rightly admitted (and
    then, in bind, refuse the node kube-scheduler already chose, a retry loop). GPU fit is gpuplace's job
    because kube-scheduler cannot see GPUs; cpu/memory fit is not. The amounts stay in the request: the
    placements count them and the fragmentation-aware policies score CPU left beside free GPUs.
    """
    try:
        res = pod_requests(pod)
    except ResourceError as e:
        raise PodRequestError(str(e)) from None
    keys = rules.keys
    count = _whole(res.get(rules.gpu_resource, Decimal(0)), rules.gpu_resource)
    migs = {
        name[len(rules.mig_prefix) :]: _whole(v, name)
        for name, v in res.items()
        if rules.mig_prefix and name.startswith(rules.mig_prefix) and v > 0
    }
    if len(migs) > 1:
        raise PodRequestError(f"a pod may request one MIG profile, got {', '.join(sorted(migs))}")
    if migs and count:
        raise PodRequestError(f"a pod may request {rules.gpu_resource} or MIG devices, not both")
    mig_profile = None
    if migs:
        mig_profile, count = next(iter(migs.items()))
    # No GPU asked (no GPU resource, or `nvidia.com/gpu: "0"`, a common chart default): the kubelet hands
    # the pod no device, so a share annotation has nothing to share and is not read.
    milli = 1000
    if count or mig_profile:
        milli = _int_annotation(pod, keys.gpu_milli, 1, 1000) or 1000
    if milli < 1000:
        if mig_profile:
            raise PodRequestError(f"{keys.gpu_milli} cannot be combined with a MIG request")
        if count > 1:
            raise PodRequestError(f"{keys.gpu_milli} is a share of one GPU; the pod requests {count} GPUs")
        count = 1
    min_mem = _int_annotation(pod, keys.gpu_memory_mib, 0, 1 << 30) or 0
    models: frozenset[str] | None = None
    if keys.gpu_models in pod.metadata.annotations:
        models = model_names(pod.metadata.annotations[keys.gpu_models].split(","))
        if not models:
            raise PodRequestError(f"annotation {keys.gpu_models} names no model")
    selected = pod.spec.node_selector.get(PRODUCT_LABEL)
    if selected:
        by_selector = model_names([selected])
        models = by_selector if models is None else models & by_selector
    nvlink_raw = pod.metadata.annotations.get(keys.nvlink)
    nvlink = rules.default_nvlink
    if nvlink_raw is not None:
        try:
            nvlink = _NVLINK[nvlink_raw.strip().lower()]
        except KeyError:
            raise PodRequestError(
                f"annotation {keys.nvlink}={nvlink_raw!r}: use required, preferred or none"
            ) from None
    cpu = res.get("cpu", Decimal(0)) * 1000
    mem = res.get("memory", Decimal(0)) / _MIB
    try:
        return GpuRequest(
            count=count,
            milli=milli,
            min_memory_mib=min_mem,
            models=models,
            mig_profile=mig_profile,
            nvlink=nvlink,
            cpu_milli=int(cpu.to_integral_value(rounding="ROUND_CEILING")),
            memory_mib=int(mem.to_integral_value(rounding="ROUND_CEILING")),
            fit_cpu_memory=False,  # see the docstring
        )
    except ValueError as e:
        raise PodRequestError(str(e)) from None


def wants_gpus(req: GpuRequest) -> bool:
    """Whether the pod asks for any GPU or MIG device. A pod that names a managed resource only with a
    zero amount reaches the extender (kube-scheduler's `IsInterested` tests the key, not the amount)
    but asks gpuplace for nothing."""
    return req.count > 0


class RequestMemo:
    """(uid, resourceVersion) → GpuRequest | PodRequestError: filter, prioritize, bind and preempt of one
    pod read the same JSON, so it is parsed once. Bounded LRU."""

    def __init__(self, rules: Rules, size: int = 4096) -> None:
        self.rules = rules
        self._size = size
        self._memo: OrderedDict[tuple[str, str], GpuRequest | PodRequestError] = OrderedDict()

    def get(self, pod: Pod) -> GpuRequest:
        key = (pod.metadata.uid, pod.metadata.resource_version)
        if not key[0] or not key[1]:
            return pod_request(pod, self.rules)
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = pod_request(pod, self.rules)
            except PodRequestError as e:
                hit = e
            self._memo[key] = hit
            if len(self._memo) > self._size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        if isinstance(hit, PodRequestError):
            raise hit
        return hit
