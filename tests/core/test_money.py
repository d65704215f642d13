"""Money is exact: decimal strings in, integer nano-USD inside, decimal strings out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p402.core.money import MoneyError, ceil_div, format_usd, parse_usd


def test_parse_and_format_examples() -> None:
    assert parse_usd("5000") == 5_000_000_000_000
    assert parse_usd("0.0040") == 4_000_000
    assert parse_usd(2) == 2_000_000_000
    assert format_usd(5_000_000_000_000) == "5000.00"
    assert format_usd(4_000_000, 4) == "0.0040"
    assert format_usd(21_000) == "0.000021"


@pytest.mark.parametrize("bad", [0.1, 1.5, True, "abc", "-1", "NaN", "Infinity", "0.0000000001", None, [1],
                                 "1e400000", "1e999999999", "1_000", "\u0661\u0662", "1000000000.5", 10**400,
                                 "0.1000000000000000000000000000001"])
def test_inexact_or_invalid_money_is_refused(bad: object) -> None:
    with pytest.raises(MoneyError):
        parse_usd(bad)


@given(st.integers(min_value=0, max_value=10**18))
def test_format_then_parse_round_trips(nanos: int) -> None:
    assert parse_usd(format_usd(nanos)) == nanos


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False, allow_infinity=False))
def test_parse_is_exact(amount: Decimal) -> None:
    assert Decimal(parse_usd(str(amount))) / 10**9 == amount


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=1, max_value=10**9))
def test_ceil_div_rounds_up_never_down(n: int, d: int) -> None:
    q = ceil_div(n, d)
    assert q * d >= n and (q - 1) * d < n


def test_huge_or_foreign_amounts_are_refused_at_once_with_a_short_message() -> None:
    with pytest.raises(MoneyError, match=r"is not a decimal number"):
        parse_usd("1e999990")  # an exponent like this used to stall the event loop for seconds
    with pytest.raises(MoneyError, match=r"largest amount p402 keeps") as err:
        parse_usd(10**30)
    assert len(str(err.value)) < 120
    assert parse_usd("1000000000") == 10**18 and parse_usd("2.5e-3") == 2_500_000
