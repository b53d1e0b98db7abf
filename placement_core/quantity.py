"""Kubernetes resource quantities ("100m", "1.5", "64Gi", "2e3") as exact decimals.

In placement_core (pure string arithmetic, standard library only) because both the extender and the webhook
need it and neither may import the other.

Why hand-written: the only maintained parser is `kubernetes.utils.parse_quantity` in the synchronous
client, which is a test dependency only; the service must not pull in a second Kubernetes client for
twenty lines. This one follows apimachinery's grammar strictly (rejects "1K", "1.5.2", " 1"), and a
property test holds it equal to `parse_quantity` on everything the grammar generates.

    quantity  ::= sign? digits ("." digits?)? suffix | sign? "." digits suffix
    suffix    ::= "" | "n" "u" "m" "k" "M" "G" "T" "P" "E" | "Ki" "Mi" "Gi" "Ti" "Pi" "Ei" | ("e"|"E") sign? digits
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_DECIMAL_SI = {"n": -3, "u": -2, "m": -1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_MIB = 1 << 20


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity; ints and floats (JSON numbers) are taken as they are."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(f"not a quantity: {value!r}")
        return Decimal(value)
    m = _QUANTITY.match(value)
    if m is None:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if not suffix:
        return number
    if suffix in _BINARY_SI:
        return number * Decimal(1024 ** _BINARY_SI[suffix])
    if suffix in _DECIMAL_SI:
        return number * Decimal(1000) ** _DECIMAL_SI[suffix]
    return number * Decimal(10) ** int(suffix[1:])


def cpu_milli(value: str | int | float) -> int:
    """CPU in millicores, rounded up as Kubernetes does ("1.5" → 1500, "1m" → 1, "0.0001" → 1)."""
    return math.ceil(parse_quantity(value) * 1000)


def memory_mib(value: str | int | float) -> int:
    """Memory in MiB, rounded up ("1Gi" → 1024, "1G" → 954, "1" → 1)."""
    return math.ceil(parse_quantity(value) / _MIB)


def count(value: str | int | float) -> int:
    """An extended-resource count (GPUs, MIG devices): must be a whole, non-negative number."""
    q = parse_quantity(value)
    if q < 0 or q != q.to_integral_value():
        raise QuantityError(f"extended resources must be whole numbers, got {value!r}")
    return int(q)


def same_quantity(left: object, right: object) -> bool:
    """Whether two quantity values are equal ("1" == "1000m"); unparseable values compare by their text."""
    try:
        return parse_quantity(left if isinstance(left, int | float | str) else str(left)) == parse_quantity(
            right if isinstance(right, int | float | str) else str(right)
        )
    except ValueError:
        return str(left) == str(right)
