from __future__ import annotations

import pytest

from placement_core import MODELS, resolve_product
from placement_core.catalog import mig_profile_by_name


@pytest.mark.parametrize(
    ("product", "model"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("NVIDIA-A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-A100-PCIE-40GB", "A100-40GB"),
        ("Tesla-V100-SXM2-32GB", "V100-32GB"),
        ("Tesla-V100-SXM2-16GB", "V100-16GB"),
        ("NVIDIA-H100-NVL", "H100-94GB"),
        ("NVIDIA-H200", "H200-141GB"),
        ("NVIDIA-B200", "B200-180GB"),
        ("NVIDIA-A30", "A30"),
        ("NVIDIA-L4", "L4"),
        ("Tesla-T4", "T4"),
        ("NVIDIA-A10", "A10"),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "A100-40GB"),
        ("NVIDIA-H100-80GB-HBM3-SHARED", "H100-80GB"),
    ],
)
def test_gfd_products_resolve_to_catalog_models(product: str, model: str) -> None:
    assert resolve_product(product).model.name == model


def test_mig_single_strategy_suffix_and_shared_flag() -> None:
    r = resolve_product("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
    assert r.mig_single_profile == "1g.5gb"
    assert resolve_product("NVIDIA-H100-80GB-HBM3-SHARED").shared


def test_unknown_product_stays_schedulable_by_memory() -> None:
    r = resolve_product("NVIDIA-Future-GPU-X", memory_mib=12345)
    assert not r.model.known
    assert r.model.memory_mib == 12345
    assert not r.model.mig_capable


def test_mig_geometry_matches_gpu_facts() -> None:
    a100 = MODELS["A100-80GB"]
    geo = {p.name: (p.compute, p.size, p.max_count, p.starts) for p in a100.mig_profiles}
    assert geo["1g.10gb"] == (1, 1, 7, (0, 1, 2, 3, 4, 5, 6))
    assert geo["1g.20gb"] == (1, 2, 4, (0, 2, 4, 6))
    assert geo["2g.20gb"] == (2, 2, 3, (0, 2, 4))
    assert geo["3g.40gb"] == (3, 4, 2, (0, 4))
    assert geo["4g.40gb"] == (4, 4, 1, (0,))
    assert geo["7g.80gb"] == (7, 8, 1, (0,))
    me = a100.mig_profile("1g.10gb.me")
    assert me is not None and me.media and me.name == "1g.10gb+me"
    a30 = MODELS["A30"]
    assert a30.mig_memory_slices == 4
    assert {p.name for p in a30.mig_profiles} == {"1g.6gb", "1g.6gb+me", "2g.12gb", "2g.12gb+me", "4g.24gb"}
    for name in ("A100-40GB", "H100-94GB", "H200-141GB", "B200-180GB"):
        assert len(MODELS[name].mig_profiles) == 7
    assert MODELS["H100-94GB"].mig_profile("3g.47gb") is not None
    assert MODELS["H200-141GB"].mig_profile("1g.35gb") is not None
    assert MODELS["B200-180GB"].mig_profile("7g.180gb") is not None


def test_profile_lookup_by_name_spans_models() -> None:
    models = {m.name for m, _ in mig_profile_by_name("3g.40gb")}
    assert {"A100-80GB", "H100-80GB"} <= models
    assert "A100-40GB" not in models
