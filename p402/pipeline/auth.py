"""Authenticate (key -> KeyRecord) and attribute (key + headers -> Attribution).

Secrets are never stored: a key is found by the SHA-256 of its secret (secrets
are 256-bit random strings, so a fast hash is the right one; a password hash
would only slow every request). No comparison ever touches secret material: the
lookup is by digest, and an attacker who can time a dict lookup learns about
digests of guesses, which tells nothing about any stored secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

from p402.core.scopes import ATTRIBUTION_ID_RE, HEADER_KINDS, Attribution
from p402.pipeline.ports import BudgetStore, KeyRecord

__all__ = ["hash_secret", "KeyRing", "AttributionError", "attribute", "KEY_CACHE_SIZE"]

KEY_CACHE_SIZE = 100_000


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """Finds keys by secret, with a bounded cache cleared whenever policy changes."""

    def __init__(self, store: BudgetStore) -> None:
        self.store = store
        self._cache: dict[str, KeyRecord] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    async def authenticate(self, secret: str | None) -> KeyRecord | None:
        if not secret:
            return None
        digest = hash_secret(secret)
        key = self._cache.get(digest)
        if key is None:
            key = await self.store.find_key(digest)
            if key is None:
                return None
            if len(self._cache) >= KEY_CACHE_SIZE:
                self._cache.clear()
            self._cache[digest] = key
        return None if key.revoked else key


@dataclass(frozen=True)
class AttributionError(Exception):
    """An attribution header (or the `user` field) is malformed or conflicts with the key."""

    param: str
    message: str


def attribute(key: KeyRecord, headers: Mapping[str, str], user: object) -> Attribution:
    """The request's attribution: the key fixes tenant, department, employee (and workflow);
    headers can only add customer, project, feature and workflow."""
    values: dict[str, str] = {}
    for kind in HEADER_KINDS:
        value = headers.get(kind)
        if value is None:
            continue
        if not ATTRIBUTION_ID_RE.fullmatch(value):
            raise AttributionError(f"X-P402-{kind.capitalize()}",
                                   f"X-P402-{kind.capitalize()} must match [A-Za-z0-9._:-]{{1,128}}")
        values[kind] = value
    if "customer" not in values and user is not None:
        if not isinstance(user, str) or not ATTRIBUTION_ID_RE.fullmatch(user):
            raise AttributionError("user", "user must be a string matching [A-Za-z0-9._:-]{1,128} "
                                           "(it names the customer); or send X-P402-Customer")
        values["customer"] = user
    if key.workflow:
        if values.get("workflow", key.workflow) != key.workflow:
            raise AttributionError("X-P402-Workflow", f"this key belongs to workflow {key.workflow}; "
                                                      f"X-P402-Workflow cannot name another")
        values["workflow"] = key.workflow
    return Attribution(tenant=key.tenant, key=key.id, department=key.department, employee=key.employee,
                       **values)
