"""Exact money: integer nano-USD (1e-9 USD).

A nano-dollar is small enough that rounding one cheap request up changes nothing
finance would see, and Python ints never overflow. Every division rounds *up*
(`ceil_div`), so a reservation is never smaller than the exact cost.
Money crosses every API and file as a decimal string in USD (`format_usd`).
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

__all__ = ["NANOS_PER_USD", "MAX_USD", "parse_usd", "format_usd", "ceil_div", "MoneyError"]

NANOS_PER_USD = 1_000_000_000
# The largest amount accepted anywhere (a cap, a price per million tokens, a mandate's max):
# far above any real budget, and its nanos fit the stores' 64-bit integers with room to sum.
MAX_USD = 1_000_000_000
_PLAIN_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,2})?")


class MoneyError(ValueError):
    """A value is not an exact USD amount."""


def parse_usd(value: object) -> int:
    """Parse a USD amount (decimal string or int) into nanos; floats are refused.

    Floats are refused because YAML and JSON floats already lost exactness
    (0.1 is not 1/10); users write money as a quoted string.
    """
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"write money as a quoted decimal string such as \"5.00\", not the number {shown}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MoneyError(f"expected a decimal string in USD, got {type(value).__name__}")
    if len(text) > 64 or not _PLAIN_DECIMAL.fullmatch(text):
        # Decimal() would also take "1e400000", "1_000", "NaN" or other scripts' digits; a
        # huge exponent costs seconds of arithmetic before anything else can object.
        raise MoneyError(f"{shown} is not a decimal number such as \"5.00\"")
    with localcontext() as ctx:
        ctx.prec = 200  # exact for every text the pattern lets through (64 characters, exponent < 100)
        amount = Decimal(text)
        if amount < 0:
            raise MoneyError(f"{shown} is negative")
        if amount > MAX_USD:
            raise MoneyError(f"{shown} is more than the largest amount p402 keeps (${MAX_USD:,})")
        nanos = amount * NANOS_PER_USD
        if nanos != nanos.to_integral_value():
            raise MoneyError(f"{shown} has more than 9 decimal places")
        return int(nanos)


def format_usd(nanos: int, min_places: int = 2) -> str:
    """Format nanos as an exact decimal USD string, at least `min_places` decimals.

    Trailing zeros beyond `min_places` are dropped; nothing is ever rounded.
    """
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    digits = f"{frac:09d}".rstrip("0")
    if len(digits) < min_places:
        digits = digits.ljust(min_places, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up (for non-negative operands)."""
    return -(-numerator // denominator)
