"""Exact money: integer nano-USD (1e-9 USD).

A nano-dollar is small enough that rounding one cheap request up changes nothing
finance would see, and Python ints never overflow. Every division rounds *up*
(`ceil_div`), so a reservation is never smaller than the exact cost.
Money crosses every API and file as a decimal string in USD (`format_usd`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["NANOS_PER_USD", "parse_usd", "format_usd", "ceil_div", "MoneyError"]

NANOS_PER_USD = 1_000_000_000


class MoneyError(ValueError):
    """A value is not an exact USD amount."""


def parse_usd(value: object) -> int:
    """Parse a USD amount (decimal string or int) into nanos; floats are refused.

    Floats are refused because YAML and JSON floats already lost exactness
    (0.1 is not 1/10); users write money as a quoted string.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"write money as a quoted decimal string such as \"5.00\", not the number {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MoneyError(f"expected a decimal string in USD, got {type(value).__name__}")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise MoneyError(f"{value!r} is not a finite amount")
    if amount < 0:
        raise MoneyError(f"{value!r} is negative")
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise MoneyError(f"{value!r} has more than 9 decimal places")
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
