"""Identifiers: time-ordered, unique event ids (ULID layout, `evt_` prefix)."""

from __future__ import annotations

import os
from datetime import datetime

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford characters: 13 table lookups encode
# the 130 bits of an id, instead of 26 big-integer divisions (an id is made on
# every request, so this is on the hot path).
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -1, -10))


def new_id(prefix: str, now: datetime) -> str:
    """`prefix_` + 26 Crockford base32 chars: 48 bits of milliseconds, 80 random bits."""
    value = (int(now.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return prefix + "_" + "".join([_PAIRS[(value >> s) & 1023] for s in _SHIFTS])
