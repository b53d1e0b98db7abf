"""The small quantity parser agrees with kubernetes.utils.parse_quantity (the reference, test-only)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity as reference

from placement_core.quantity import parse_quantity, same_quantity

suffixes = st.sampled_from(
    ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3", "E-2", "e0"]
)
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.decimals(min_value=0, max_value=10**4, places=3, allow_nan=False).map(str),
)


@given(numbers, suffixes)
def test_agrees_with_the_kubernetes_client(number: str, suffix: str) -> None:
    text = number + suffix
    assert parse_quantity(text) == reference(text)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1Qi", "--1", "1 Gi", "e3"])
def test_rejects_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_same_quantity() -> None:
    assert same_quantity("1", "1000m") and same_quantity("1Ki", "1024") and same_quantity(2, "2")
    assert not same_quantity("1", "2")
    assert same_quantity("weird", "weird") and not same_quantity("weird", "1")
    assert parse_quantity("1.5Gi") == Decimal(1.5 * 2**30)
