"""Kubernetes resource quantities, just enough to compare two of them.

Why: "requests == limits" must compare values, not spellings ("1" and "1000m" are equal). The
kube-apiserver re-serialises quantities canonically before calling webhooks, so in production the
strings usually match already; this keeps the rule right for any client that talks to the engine
directly (tests, dry runs through other tools). Exact decimal arithmetic, property-tested against
`kubernetes.utils.parse_quantity` (a test-only dependency).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


def parse_quantity(text: str) -> Decimal:
    """Parse a Kubernetes quantity ("2", "500m", "1Gi", "1e3") into an exact Decimal.

    Raises ValueError on anything else.
    """
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    if exponent:
        return value.scaleb(int(exponent[1:]))
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value.scaleb(_DECIMAL[suffix or ""])


def same_quantity(left: object, right: object) -> bool:
    """Whether two quantity values are equal; unparseable values compare by their text."""
    try:
        return parse_quantity(str(left)) == parse_quantity(str(right))
    except ValueError:
        return str(left) == str(right)
