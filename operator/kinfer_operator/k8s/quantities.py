"""Kubernetes resource quantities ("500m", "0.5", "1Gi", "1e3") as exact numbers, to compare them as the API does.

The API server stores a quantity in canonical form: ``cpu: 0.5`` comes back as ``500m`` and ``memory: 1024Mi``
as ``1Gi``. Compared as text, the live object would never match the desired one and every reconcile would send a
patch that changes nothing. Pure; the grammar is that of ``k8s.io/apimachinery/pkg/api/resource``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal | None:
    """The exact value of a quantity, or None when ``text`` is not one."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        return None
    if match["binary"]:
        return number * (Decimal(1024) ** _BINARY[match["binary"]])
    if match["decimal"]:
        return number.scaleb(_DECIMAL[match["decimal"]])
    if match["exponent"]:
        return number.scaleb(int(match["exponent"]))
    return number


def same_quantity(live: object, desired: object) -> bool:
    """Whether two values (text or numbers, as they come from YAML) are the same quantity."""
    if isinstance(live, bool) or isinstance(desired, bool):
        return False
    if not isinstance(live, str | int | float) or not isinstance(desired, str | int | float):
        return False
    live_value, desired_value = parse_quantity(str(live)), parse_quantity(str(desired))
    return live_value is not None and live_value == desired_value
