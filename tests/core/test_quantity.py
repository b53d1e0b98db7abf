"""scheduler.quantity against kubernetes.utils.parse_quantity (the reference), on the whole grammar."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity as reference

from placement_core.quantity import QuantityError, count, cpu_milli, memory_mib, parse_quantity

digits = st.text("0123456789", min_size=1, max_size=8)
number = st.one_of(
    digits,
    st.builds(lambda a, b: f"{a}.{b}", digits, st.text("0123456789", max_size=6)),
    st.builds(lambda b: f".{b}", digits),
)
suffix = st.one_of(
    st.sampled_from(["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]),
    st.builds(
        lambda e, s, d: f"{e}{s}{d}",
        st.sampled_from("eE"),
        st.sampled_from(["", "+", "-"]),
        st.text("0123456789", min_size=1, max_size=2),
    ),
)
quantity = st.builds(lambda sign, n, s: f"{sign}{n}{s}", st.sampled_from(["", "+", "-"]), number, suffix)


@given(quantity)
def test_equal_to_the_kubernetes_client(q: str) -> None:
    ours, theirs = parse_quantity(q), reference(q)
    assert ours == theirs or abs(ours - theirs) <= abs(theirs) * Decimal("1e-20")


@pytest.mark.parametrize(
    "bad", ["", "1K", "1.5.2", " 1", "1 ", "abc", "1ki", "--1", "1e", "Mi", "0x10", "1Mb"]
)
def test_rejects_what_apimachinery_rejects(bad: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_units() -> None:
    assert cpu_milli("1.5") == 1500
    assert cpu_milli("100m") == 100
    assert cpu_milli("0.0001") == 1  # rounded up like Kubernetes
    assert memory_mib("1Gi") == 1024
    assert memory_mib("1G") == 954
    assert memory_mib(1) == 1
    assert count("8") == 8
    assert count(2) == 2
    with pytest.raises(QuantityError):
        count("1.5")
    with pytest.raises(QuantityError):
        count("-1")
    with pytest.raises(QuantityError):
        parse_quantity(True)
