"""GPU catalog: facts per GPU model, the MIG profile geometry, and GFD product-string resolution.

Profiles are keyed on geometry (compute slices, memory slices, media extensions), not on their name
strings: names vary by driver build (GB200 shows 1g.23gb on one build and 1g.24gb on another), while
the geometry and placement rules below are what NVML enforces (see ../shared/GPU-FACTS.md).
An unknown product is still schedulable by count and memory: `resolve_product` returns a generic model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MIG_MEMORY_SLICES = 8  # A100/H100/H200/B200/GB200; A30 uses 4 (see GpuModel.mig_memory_slices)


@dataclass(frozen=True, slots=True)
class MigProfile:
    """One MIG GPU-instance profile: `size` memory slices starting at one of `starts`."""

    name: str  # Kubernetes form, e.g. "3g.40gb", "1g.10gb+me"
    compute: int  # compute (SM) slices, the "Ng" part
    size: int  # memory slices occupied
    max_count: int  # at most this many per GPU
    starts: tuple[int, ...]  # valid first memory slice
    media: bool = False  # "+me": at most one per GPU
    gi_id: int = -1  # NVML GPU-instance profile id

    @property
    def resource_suffix(self) -> str:
        """`nvidia.com/mig-<suffix>`: the device plugin writes '+' as '.'."""
        return self.name.replace("+", ".")

    @property
    def starts_mask(self) -> int:
        """Bit i set when slice i is a valid start."""
        mask = 0
        for s in self.starts:
            mask |= 1 << s
        return mask


def _mig8(g1: str, g1x2: str, g3: str, g7: str) -> tuple[MigProfile, ...]:
    """The 8-memory-slice family (A100/H100/H200/B200/GB200), from the per-model name suffixes."""
    return (
        MigProfile(f"1g.{g1}", 1, 1, 7, (0, 1, 2, 3, 4, 5, 6), gi_id=19),
        MigProfile(f"1g.{g1}+me", 1, 1, 1, (0, 1, 2, 3, 4, 5, 6), media=True, gi_id=20),
        MigProfile(f"1g.{g1x2}", 1, 2, 4, (0, 2, 4, 6), gi_id=15),
        MigProfile(f"2g.{g1x2}", 2, 2, 3, (0, 2, 4), gi_id=14),
        MigProfile(f"3g.{g3}", 3, 4, 2, (0, 4), gi_id=9),
        MigProfile(f"4g.{g3}", 4, 4, 1, (0,), gi_id=5),
        MigProfile(f"7g.{g7}", 7, 8, 1, (0,), gi_id=0),
    )


_A30_MIG = (
    MigProfile("1g.6gb", 1, 1, 4, (0, 1, 2, 3), gi_id=14),
    MigProfile("1g.6gb+me", 1, 1, 1, (0, 1, 2, 3), media=True, gi_id=21),
    MigProfile("2g.12gb", 2, 2, 2, (0, 2), gi_id=5),
    MigProfile("2g.12gb+me", 2, 2, 1, (0, 2), media=True, gi_id=6),
    MigProfile("4g.24gb", 4, 4, 1, (0,), gi_id=0),
)


@dataclass(frozen=True, slots=True)
class GpuModel:
    """Facts about one GPU model. `nvlink` names the default intra-node topology preset."""

    name: str
    memory_mib: int
    architecture: str
    mig_profiles: tuple[MigProfile, ...] = ()
    mig_memory_slices: int = MIG_MEMORY_SLICES
    nvlink: str = "none"  # topology preset name, see placement_core.topology.PRESETS
    known: bool = True

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)

    def mig_profile(self, name: str) -> MigProfile | None:
        """Look a profile up by its name or resource suffix ("1g.10gb+me" or "1g.10gb.me")."""
        for p in self.mig_profiles:
            if name in (p.name, p.resource_suffix):
                return p
        return None


_GIB = 1024
MODELS: dict[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel("A100-40GB", 40 * _GIB, "ampere", _mig8("5gb", "10gb", "20gb", "40gb"), nvlink="nvswitch"),
        GpuModel("A100-80GB", 80 * _GIB, "ampere", _mig8("10gb", "20gb", "40gb", "80gb"), nvlink="nvswitch"),
        GpuModel("A800-80GB", 80 * _GIB, "ampere", _mig8("10gb", "20gb", "40gb", "80gb"), nvlink="nvswitch"),
        GpuModel("A30", 24 * _GIB, "ampere", _A30_MIG, mig_memory_slices=4, nvlink="pairs"),
        GpuModel("H100-80GB", 80 * _GIB, "hopper", _mig8("10gb", "20gb", "40gb", "80gb"), nvlink="nvswitch"),
        GpuModel("H800-80GB", 80 * _GIB, "hopper", _mig8("10gb", "20gb", "40gb", "80gb"), nvlink="nvswitch"),
        GpuModel("H100-94GB", 94 * _GIB, "hopper", _mig8("12gb", "24gb", "47gb", "94gb"), nvlink="pairs"),
        GpuModel(
            "H200-141GB", 141 * _GIB, "hopper", _mig8("18gb", "35gb", "71gb", "141gb"), nvlink="nvswitch"
        ),
        GpuModel(
            "B200-180GB", 180 * _GIB, "blackwell", _mig8("23gb", "45gb", "90gb", "180gb"), nvlink="nvswitch"
        ),
        GpuModel(
            "GB200-186GB", 186 * _GIB, "blackwell", _mig8("23gb", "47gb", "93gb", "186gb"), nvlink="nvswitch4"
        ),
        GpuModel("V100-16GB", 16 * _GIB, "volta", nvlink="dgx1"),
        GpuModel("V100-32GB", 32 * _GIB, "volta", nvlink="dgx1"),
        GpuModel("P100-16GB", 16 * _GIB, "pascal", nvlink="none"),
        GpuModel("T4", 16 * _GIB, "turing"),
        GpuModel("A10", 24 * _GIB, "ampere"),
        GpuModel("A40", 48 * _GIB, "ampere", nvlink="pairs"),
        GpuModel("RTX-A6000", 48 * _GIB, "ampere", nvlink="pairs"),
        GpuModel("L4", 24 * _GIB, "ada"),
        GpuModel("L40S", 48 * _GIB, "ada"),
    )
}

# GFD product strings, after normalisation (see _normalise), mapped to catalog names. Order matters:
# the first pattern that matches wins, so the specific forms come before the general ones.
_PRODUCT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), name)
    for p, name in (
        (r"^GB200", "GB200-186GB"),
        (r"^B200", "B200-180GB"),
        (r"^H200", "H200-141GB"),
        (r"^H100.*(NVL|94GB)", "H100-94GB"),
        (r"^H100", "H100-80GB"),
        (r"^H800", "H800-80GB"),
        (r"^A800", "A800-80GB"),
        (r"^A100.*80GB", "A100-80GB"),
        (r"^A100", "A100-40GB"),
        (r"^A30($|-)", "A30"),
        (r"^A40($|-)", "A40"),
        (r"^A10($|-)", "A10"),
        (r"^V100.*32GB", "V100-32GB"),
        (r"^V100", "V100-16GB"),
        (r"^P100", "P100-16GB"),
        (r"^T4($|-)", "T4"),
        (r"^L40S", "L40S"),
        (r"^L4($|-)", "L4"),
        (r"^RTX-A6000", "RTX-A6000"),
    )
)

_MIG_SUFFIX = re.compile(r"-MIG-[0-9]+g\.[0-9]+gb.*$")


def _normalise(product: str) -> str:
    """`NVIDIA-H100-80GB-HBM3-MIG-1g.10gb` → `H100-80GB-HBM3`; also drops `-SHARED` and vendor prefixes."""
    p = product.strip()
    for prefix in ("NVIDIA-", "Tesla-", "NVIDIA ", "Tesla "):
        if p.startswith(prefix):
            p = p[len(prefix) :]
    p = p.removesuffix("-SHARED")
    p = _MIG_SUFFIX.sub("", p)
    return p.replace(" ", "-")


@dataclass(frozen=True, slots=True)
class ResolvedProduct:
    model: GpuModel
    mig_single_profile: str | None = None  # "-MIG-<profile>" suffix under the single strategy
    shared: bool = False  # "-SHARED": time-slicing replicas
    extra: dict[str, str] = field(default_factory=dict)


def resolve_product(product: str, memory_mib: int | None = None) -> ResolvedProduct:
    """Map a GFD `nvidia.com/gpu.product` value to a catalog model.

    Unknown products yield a generic model named after the product with `memory_mib` (from the
    `nvidia.com/gpu.memory` label), so they stay schedulable by count and memory.
    """
    mig = None
    m = re.search(r"-MIG-([0-9]+g\.[0-9]+gb(?:\+me)?)", product)
    if m:
        mig = m.group(1)
    shared = product.endswith("-SHARED")
    norm = _normalise(product)
    for pattern, name in _PRODUCT_PATTERNS:
        if pattern.search(norm):
            model = MODELS[name]
            return ResolvedProduct(model, mig, shared)
    generic = GpuModel(norm or "unknown", int(memory_mib or 0), "unknown", known=False)
    return ResolvedProduct(generic, mig, shared)


def mig_profile_by_name(name: str) -> list[tuple[GpuModel, MigProfile]]:
    """Every (model, profile) whose profile name or resource suffix equals `name`."""
    out = []
    for model in MODELS.values():
        p = model.mig_profile(name)
        if p is not None:
            out.append((model, p))
    return out
