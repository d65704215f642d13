"""Identifiers: time-ordered, unique event ids (ULID layout, `evt_` prefix)."""

from __future__ import annotations

import os
from datetime import datetime

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str, now: datetime) -> str:
    """`prefix_` + 26 Crockford base32 chars: 48 bits of milliseconds, 80 random bits."""
    value = (int(now.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return prefix + "_" + "".join(reversed(chars))
