"""Budget periods and their calendar windows.

Windows are calendar-aligned in the configured timezone and computed from the
clock, so they roll over by themselves: a new window is simply a new counter key,
no job has to reset anything. `total` is one window forever; `request` has no
window at all (the cap applies to each request alone).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

__all__ = ["ledger_ts", "PERIODS", "Window", "window_for", "TOTAL_START", "boundary_iso"]

PERIODS = ("hour", "day", "week", "month", "quarter", "year", "total", "request")
TOTAL_START = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Window:
    """A half-open interval [start, end) of one period. `end` is None for `total`."""

    __slots__ = ("start", "end", "key", "resets_at")

    def __init__(self, start: datetime, end: datetime | None) -> None:
        self.start = start
        self.end = end
        # The window's identity inside a counter key: its start as a Unix second, and its end as
        # the ledger and deny bodies show it (each read on every request, so computed once).
        self.key = int(start.timestamp())
        self.resets_at = boundary_iso(end) if end is not None else None

    def seconds_left(self, now: datetime) -> int | None:
        if self.end is None:
            return None
        return max(0, int((self.end - now).total_seconds() + 0.999))

    def __repr__(self) -> str:
        return f"Window({self.start.isoformat()}, {self.end.isoformat() if self.end else None})"


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _localize(naive: datetime, tz: tzinfo) -> datetime:
    # Calendar boundaries are wall-clock times in `tz`; attaching tzinfo lets
    # zoneinfo pick the right UTC offset for that date (DST included).
    return naive.replace(tzinfo=tz)


# The last window computed per (period, timezone). Windows of one period tile the
# timeline, so a window that contains `now` is *the* window for `now`: every
# request of the same hour/day/month reuses it instead of redoing the calendar
# arithmetic (several microseconds per budget, on every request). Bounded by
# the number of periods times the timezones in use.
_LAST: dict[tuple[str, tzinfo], Window] = {}


def window_for(period: str, now: datetime, tz: tzinfo = timezone.utc) -> Window:
    """The window of `period` containing `now` (an aware datetime)."""
    last = _LAST.get((period, tz))
    if last is not None and now.tzinfo is not None and last.start <= now and (last.end is None or now < last.end):
        return last
    window = _window_for(period, now, tz)
    if len(_LAST) >= 64:
        _LAST.clear()
    _LAST[(period, tz)] = window
    return window


def _window_for(period: str, now: datetime, tz: tzinfo) -> Window:
    if period == "total":
        return Window(TOTAL_START, None)
    if period == "request":
        raise ValueError("a request-period budget has no window")
    local = now.astimezone(tz)
    if period == "hour":
        return _local_hour(now, local, tz)
    day = datetime(local.year, local.month, local.day)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        end = start + timedelta(days=7)
    elif period in ("month", "quarter", "year"):
        if period == "month":
            y, m, span = local.year, local.month, 1
        elif period == "quarter":
            y, m, span = local.year, (local.month - 1) // 3 * 3 + 1, 3
        else:
            y, m, span = local.year, 1, 12
        ey, em = _add_months(y, m, span)
        start, end = datetime(y, m, 1), datetime(ey, em, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return Window(_localize(start, tz), _localize(end, tz))


def _on_the_hour(moment: datetime, tz: tzinfo) -> bool:
    local = moment.astimezone(tz)
    return local.minute == 0 and local.second == 0 and local.microsecond == 0


def _local_hour(now: datetime, local: datetime, tz: tzinfo) -> Window:
    """The hour containing `now`, between two instants whose local time is on the hour (so
    Asia/Kolkata's hours start at :30 UTC). Zones whose DST shift is a whole hour keep 60-minute
    hours (an hour repeated by a fall-back is two windows); a 30-minute shift (Australia/Lord_Howe)
    makes the hour around it 90 minutes, the only way windows on the hour can tile time there."""
    start = now - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    for _ in range(4):  # a 30-minute shift within the last hour moved the wall clock: step back to :00
        if _on_the_hour(start, tz):
            break
        start -= timedelta(minutes=30)
    else:
        return _utc_hour(now)  # a zone whose hours never land on :00 (none known): UTC hours
    end = start + timedelta(hours=1)
    if not _on_the_hour(end, tz):
        end += timedelta(minutes=30)
        if not _on_the_hour(end, tz):
            return _utc_hour(now)
    return Window(start.astimezone(timezone.utc), end.astimezone(timezone.utc))


def _utc_hour(now: datetime) -> Window:
    start = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return Window(start, start + timedelta(hours=1))


def ledger_ts(moment: datetime) -> str:
    """A ledger timestamp: ISO 8601 UTC to the millisecond with a `Z` (`2026-12-01T17:23:07.123Z`;
    truncated, not rounded). Every row has one: a UTC moment (the gateway's clock) skips the
    conversion and the search for "+00:00"."""
    u = moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)
    return u.isoformat(timespec="milliseconds")[:-6] + "Z"


def boundary_iso(moment: datetime) -> str:
    """A window boundary as ISO 8601 UTC to the second (`2027-01-01T00:00:00Z`), as the contract shows `resets_at`."""
    u = moment.astimezone(timezone.utc)
    # Formatted by hand: strftime costs ~1 us (glibc re-reads the local timezone), on every decision row.
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"
