"""The simulator's whole-GPU chooser keeps multi-GPU pods on one NVLink island when it can."""

from __future__ import annotations

import numpy as np
import pytest

from gpuplace.simulate.gpuset import connected_set, first_free, openb_links
from placement_core.islands import largest_island_py

DGX1 = openb_links("V100M32", 8)


def choose(free: list[int], links: np.ndarray, count: int) -> list[int]:
    out = np.zeros(len(free), np.bool_)
    connected_set(np.array(free, np.int32), np.ones(len(free), np.bool_), links, count, out)
    return [g for g in range(len(free)) if out[g]]


def connected(links: np.ndarray, gpus: list[int]) -> bool:
    mask = np.zeros(links.shape[0], np.bool_)
    mask[gpus] = True
    return largest_island_py(links, mask) == len(gpus)


def test_presets() -> None:
    assert openb_links("G2", 8).sum() == 8 * 7 * 12  # NVSwitch: every pair
    assert openb_links("T4", 2).sum() == 0 and openb_links("P100", 2).sum() == 0
    assert openb_links("V100M16", 4).min(initial=0) == 0 and openb_links("V100M16", 4).sum() == 4 * 3 * 2
    assert DGX1[0, 3] == 2 and DGX1[0, 5] == 0


@pytest.mark.parametrize("count", [2, 4, 8])
def test_dgx1_full_node(count: int) -> None:
    got = choose([1000] * 8, DGX1, count)
    assert len(got) == count and connected(DGX1, got)
    if count == 2:
        assert DGX1[got[0], got[1]] == 2  # a double NVLink pair
    if count == 4:
        assert got in ([0, 1, 2, 3], [4, 5, 6, 7])  # a fully connected quad


def test_dgx1_prefers_the_smallest_island_that_fits() -> None:
    # free {0} ∪ {5, 6}: a 2-GPU pod takes 5-6 (0 has no free neighbour), a single GPU keeps 5-6 together
    free = [1000, 0, 0, 0, 0, 1000, 1000, 0]
    assert choose(free, DGX1, 2) == [5, 6]
    assert choose(free, DGX1, 1) == [0]


def test_no_island_large_enough_falls_back_to_index_order() -> None:
    free = [1000, 0, 0, 0, 0, 1000, 1000, 0]
    assert choose(free, DGX1, 3) == [0, 5, 6]


def test_index_order_chooser() -> None:
    out = np.zeros(4, np.bool_)
    assert first_free(np.array([0, 1000, 500, 1000], np.int32), np.ones(4, np.bool_), 2, out) == 2
    assert out.tolist() == [False, True, False, True]
