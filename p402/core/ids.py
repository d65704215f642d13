"""Identifiers: time-ordered, unique event ids (ULID layout, `evt_` prefix)."""

from __future__ import annotations

import os
import random
from datetime import datetime

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford characters: 13 table lookups encode
# the 130 bits of an id, instead of 26 big-integer divisions (an id is made on
# every request, so this is on the hot path).
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_TIME_SHIFTS = (40, 30, 20, 10, 0)  # the first 10 characters: 2 zero bits and 48 bits of milliseconds
_RANDOM_SHIFTS = (70, 60, 50, 40, 30, 20, 10, 0)  # the last 16: 80 random bits
_last: tuple[int, str] = (-1, "")  # the time characters of the last millisecond an id was made in
# p402's own generator, seeded from the OS: no other code's random.seed() can make ids repeat, and
# a forked worker seeds its own again (two workers must never draw the same bits).
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)


def new_id(prefix: str, now: datetime) -> str:
    """`prefix_` + 26 Crockford base32 chars: 48 bits of milliseconds, 80 random bits.

    Ids are unique and time-ordered, not secret (event ids are in response headers; no API takes
    one as a credential), so the random bits come from a Mersenne Twister of p402's own (seeded
    from the OS, again in every forked worker): a fifth of the cost of `os.urandom`'s syscall.
    """
    global _last
    ms = int(now.timestamp() * 1000)
    last_ms, head = _last
    if ms != last_ms:
        head = "".join([_PAIRS[(ms >> s) & 1023] for s in _TIME_SHIFTS])
        _last = (ms, head)
    bits = _rng.getrandbits(80)
    return prefix + "_" + head + "".join([_PAIRS[(bits >> s) & 1023] for s in _RANDOM_SHIFTS])
