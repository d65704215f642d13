"""The HTTP client every adapter shares: one pooled aiohttp session per provider.

It draws the line the pipeline relies on: a transport failure, a timeout, a
429 or a 5xx before any byte of the answer is in hand raises a *retryable*
`UpstreamError` (the pipeline then tries the model's fallbacks); any other 4xx
is returned to the adapter, which relays it in the client's format. The
session is created lazily inside the running event loop (an aiohttp session
belongs to the loop it was made in) and closed by `close()`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
from yarl import URL

from p402.errors import ConfigError, UpstreamError

__all__ = ["UpstreamClient", "HttpSettings", "DEFAULT_TIMEOUT_S", "DEFAULT_CONNECT_TIMEOUT_S",
           "DEFAULT_MAX_CONNECTIONS", "MAX_REPLY_BYTES", "MAX_ERROR_BYTES", "read_body", "read_error_body",
           "read_error", "TRANSPORT_ERRORS"]

DEFAULT_TIMEOUT_S = 600.0  # a whole call, stream included: long generations finish well inside it
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 100  # per provider; more concurrent calls wait for a pooled connection
MAX_REPLY_BYTES = 64 * 1024 * 1024  # a non-streamed answer; images in base64 can be large
MAX_ERROR_BYTES = 64 * 1024  # we relay an error's message, not a novel

_MAX_CACHED_TIMEOUTS = 64  # distinct call timeouts remembered; more are built per call

# What aiohttp raises when the network, the peer or the clock fails us.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The transport part of a provider's settings (SPEC §5), with named defaults."""

    base_url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def parse(cls, provider: str, settings: Mapping[str, Any], default_base_url: str) -> HttpSettings:
        def number(key: str, default: float) -> float:
            value = settings.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"providers.{provider}.{key}: expected a positive number of seconds, got {value!r}")
            return float(value)

        base = str(settings.get("base_url") or default_base_url).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"providers.{provider}.base_url: expected an http(s) URL, got {base!r}")
        limit = settings.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"providers.{provider}.max_connections: expected a positive integer, got {limit!r}")
        return cls(base, number("timeout_s", DEFAULT_TIMEOUT_S),
                   number("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S), limit)


class UpstreamClient:
    """POSTs to one provider over a pooled connection."""

    def __init__(self, provider: str, settings: HttpSettings) -> None:
        self.provider = provider
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        # ClientTimeout is immutable and a call's timeout is one of very few values: building
        # one per request cost ~1.7 us of aiohttp's ~67 us per POST (measured in isolation).
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def timeout(self, call_timeout_s: float) -> aiohttp.ClientTimeout:
        cached = self._timeouts.get(call_timeout_s)
        if cached is None:
            total = min(self.settings.timeout_s, call_timeout_s)
            cached = aiohttp.ClientTimeout(total=total, sock_connect=min(self.settings.connect_timeout_s, total))
            if len(self._timeouts) < _MAX_CACHED_TIMEOUTS:
                self._timeouts[call_timeout_s] = cached
        return cached

    async def post(self, url: str | URL, body: bytes, headers: Mapping[str, str],
                   call_timeout_s: float) -> aiohttp.ClientResponse:
        """Send; return the response for 2xx and non-429 4xx, raise a retryable UpstreamError otherwise."""
        try:
            # No redirects: a provider never redirects an API call, and following one would
            # send the key to wherever the redirect points.
            resp = await self._get_session().post(url, data=body, headers=headers, allow_redirects=False,
                                                  timeout=self.timeout(call_timeout_s))
        except asyncio.TimeoutError as exc:  # the provider may be working on it (and will bill it)
            raise UpstreamError(f"{self.provider}: no answer within the timeout", 504, retryable=True,
                                maybe_billed=True) from exc
        except TRANSPORT_ERRORS as exc:
            # Only a connection that was never made is sure to have cost nothing.
            raise UpstreamError(f"{self.provider}: connection failed ({type(exc).__name__})", 502, retryable=True,
                                maybe_billed=not isinstance(exc, aiohttp.ClientConnectorError)) from exc
        if resp.status == 429 or resp.status >= 500:
            detail = await read_error(resp)
            raise UpstreamError(f"{self.provider} answered {resp.status}: {detail}", resp.status, retryable=True)
        if 300 <= resp.status < 400:
            resp.close()
            raise UpstreamError(f"{self.provider} answered with a redirect ({resp.status}); check base_url", 502)
        return resp

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


async def read_body(resp: aiohttp.ClientResponse, provider: str, limit: int = MAX_REPLY_BYTES) -> bytes:
    """Read a whole (non-streamed) body, bounded. Failures are retryable: nothing was relayed yet."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"{provider}: answer larger than {limit} bytes", 502, maybe_billed=True)
            chunks.append(chunk)
    except asyncio.TimeoutError as exc:
        raise UpstreamError(f"{provider}: answer did not finish within the timeout", 504, retryable=True,
                            maybe_billed=True) from exc
    except TRANSPORT_ERRORS as exc:
        raise UpstreamError(f"{provider}: connection lost while reading the answer ({type(exc).__name__})", 502,
                            retryable=True, maybe_billed=True) from exc
    finally:
        resp.release()
    return b"".join(chunks)


async def read_error_body(resp: aiohttp.ClientResponse, limit: int = MAX_ERROR_BYTES) -> bytes:
    """An error body, cut at `limit` bytes; never raises (an error is already being reported)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except TRANSPORT_ERRORS:
        pass
    finally:
        # A fully read body leaves its connection reusable; the rest of a huge one is not
        # worth reading, so that connection is closed (release() decides which).
        resp.release()
    return b"".join(chunks)[:limit]


async def read_error(resp: aiohttp.ClientResponse) -> str:
    """A short, printable excerpt of an error body (never raises)."""
    text = (await read_error_body(resp)).decode("utf-8", "replace").strip()
    return text[:500] or resp.reason or "no detail"
