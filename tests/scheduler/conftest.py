"""Fixtures: an ExtenderContext over a small cluster, with an in-memory API server that plays the watch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from scheduler.binder import MemoryBinder
from scheduler.context import ExtenderContext
from scheduler.settings import SchedulerSettings
from tests.scheduler import objects as o


def make_ctx(
    nodes: list[dict[str, Any]], pods: Sequence[dict[str, Any]] = (), **settings: Any
) -> ExtenderContext:
    binder = MemoryBinder()
    ctx = ExtenderContext.build(SchedulerSettings(**settings), binder)
    binder.on_change = ctx.cache.apply_pod
    ctx.cache.replace_nodes(nodes)
    ctx.cache.replace_pods(list(pods), listed_at=0.0)
    ctx.warm = True
    return ctx


@pytest.fixture
def cluster() -> ExtenderContext:
    """h0, h1: HGX H100 8-GPU; h0 has 6 GPUs busy (foreign pod). v0: DGX-1 V100. a0: A100 MIG mixed.
    c0: CPU only."""
    nodes = [
        o.node("h0"),
        o.node("h1"),
        o.node("v0", product="Tesla-V100-SXM2-32GB", memory_mib=32768),
        o.node(
            "a0", product="NVIDIA-A100-SXM4-80GB", gpus=4, memory_mib=81920, mig={"3g.40gb": 4, "1g.10gb": 14}
        ),
        o.node("c0", product="", gpus=0),
    ]
    pods = [o.pod("busy", gpus=6, node_name="h0", phase="Running")]
    return make_ctx(nodes, pods)


def binder_of(ctx: ExtenderContext) -> MemoryBinder:
    assert isinstance(ctx.binder, MemoryBinder)
    return ctx.binder
