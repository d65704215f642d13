"""Calendar windows: aligned in the configured timezone, contiguous, rolling over by themselves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p402.core.periods import window_for

UTC = timezone.utc
ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"),
         ZoneInfo("Australia/Lord_Howe")]


def test_examples() -> None:
    now = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    m = window_for("month", now)
    assert (m.start, m.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    q = window_for("quarter", datetime(2026, 11, 15, tzinfo=UTC))
    assert (q.start.month, q.end.month, q.end.year) == (10, 1, 2027)
    w = window_for("week", now)  # Tuesday -> Monday 30 Nov
    assert w.start == datetime(2026, 11, 30, tzinfo=UTC)
    berlin = window_for("day", datetime(2026, 7, 1, 23, 30, tzinfo=UTC), ZoneInfo("Europe/Berlin"))
    assert berlin.start.isoformat() == "2026-07-02T00:00:00+02:00"  # 23:30 UTC is already tomorrow in Berlin
    assert window_for("total", now).end is None
    assert window_for("hour", now).seconds_left(now) == 1800


def test_hours_start_on_the_local_hour_in_every_zone() -> None:
    kolkata = window_for("hour", datetime(2026, 12, 1, 10, 45, tzinfo=UTC), ZoneInfo("Asia/Kolkata"))
    assert (kolkata.start, kolkata.end) == (datetime(2026, 12, 1, 10, 30, tzinfo=UTC), datetime(2026, 12, 1, 11, 30, tzinfo=UTC))
    for tz in ZONES:
        now, lengths = datetime(2026, 1, 1, tzinfo=UTC), set()
        while now < datetime(2027, 1, 1, tzinfo=UTC):  # every hour of a year, DST changes included
            w = window_for("hour", now, tz)
            assert w.start <= now < w.end and w.end is not None
            assert w.start.astimezone(tz).minute == 0 and w.end.astimezone(tz).minute == 0, (tz, now)
            lengths.add(w.end - w.start)
            now = w.end
        # Whole-hour DST shifts keep 60-minute hours; Lord Howe's 30-minute shift makes two 90-minute ones.
        expected = {timedelta(hours=1), timedelta(minutes=90)} if str(tz) == "Australia/Lord_Howe" else {timedelta(hours=1)}
        assert lengths == expected, tz


def test_request_period_has_no_window() -> None:
    with pytest.raises(ValueError):
        window_for("request", datetime.now(UTC))


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(["hour", "day", "week", "month", "quarter", "year"]), st.sampled_from(ZONES))
def test_windows_contain_now_and_tile_time(now: datetime, period: str, tz: object) -> None:
    w = window_for(period, now, tz)  # type: ignore[arg-type]
    assert w.end is not None
    assert w.start <= now < w.end
    # The next window starts exactly where this one ends: no gap, no overlap.
    nxt = window_for(period, w.end, tz)  # type: ignore[arg-type]
    assert nxt.start == w.end and nxt.key > w.key
    before = window_for(period, w.start - timedelta(microseconds=1), tz)  # type: ignore[arg-type]
    assert before.end == w.start
