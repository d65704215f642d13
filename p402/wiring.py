"""The composition root: the only place that picks concrete stores and providers.

`Runtime` owns everything a running gateway needs and its background duties
(policy refresh across replicas, hold expiry, spool replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import replace, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from p402.config import Config
from p402.errors import LedgerCorrupt, StoreError, StoreUnavailable
from p402.ops.apply import apply_config
from p402.ops.metrics import Metrics
from p402.ops.policy_cache import POLL_INTERVAL_S, PolicyCache
from p402.ops.spool import FileSpool
from p402.pipeline.auth import KeyRing
from p402.pipeline.gateway import Gateway
from p402.pipeline.ports import HoldInfo, Provider
from p402.pipeline.records import expiry_entry
from p402.pipeline.tokens import warm
from p402.prove.checkpoints import Checkpointer, FileSealLock
from p402.prove.signing import Signer
from p402.providers import registry
from p402.providers.prices import catalog_context_window, catalog_tiers

__all__ = ["Runtime", "open_store", "build_runtime", "priced_models", "default_spool_path", "EXPIRY_INTERVAL_S"]

EXPIRY_INTERVAL_S = 5.0
WRITE_OUT_INTERVAL_S = 0.25  # SQLite: how far its counters, holds and spend tables may lag (p402.stores.sqlite)
SEAL_CHECK_INTERVAL_S = 1.0  # how often the sealer looks; it seals per ledger.checkpoint_* settings
log = logging.getLogger("p402")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def open_store(url: str) -> Any:
    """The store a URL names: `sqlite:///PATH` or `postgresql://...`."""
    if url.startswith("sqlite:///"):
        from p402.stores.sqlite import SqliteStore
        return SqliteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from p402.stores.postgres import PostgresStore
        return await PostgresStore.connect(url)
    raise StoreUnavailable(f"unsupported store URL {url!r}")


def build_providers(config: Config) -> dict[str, Provider]:
    return registry.build_providers(config.providers)


def priced_models(config: Config) -> Config:
    """Fill each model's price and context window from the price package where the config gives none."""
    models = []
    for m in config.models:
        if m.price is None:
            tiers = catalog_tiers(m.provider, m.upstream)
            if tiers:
                m = replace(m, price=tiers[0].price,
                            price_tiers=tuple((t.above, t.price) for t in tiers[1:]))
        if m.context_window is None:
            m = replace(m, context_window=catalog_context_window(m.provider, m.upstream))
        models.append(m)
    return replace(config, models=tuple(models))


@dataclass
class Runtime:
    """Everything a running gateway holds."""

    config: Config
    store: Any
    policies: PolicyCache
    keys: KeyRing
    providers: dict[str, Provider]
    metrics: Metrics
    spool: FileSpool
    gateway: Gateway
    clock: Callable[[], datetime] = utcnow
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None  # the loop serving this runtime (set at start)
    signer: Signer | None = None
    checkpointer: Checkpointer | None = None

    async def refresh_policy(self, force: bool = False) -> None:
        if await self.policies.refresh(force):
            self.keys.invalidate()

    def start_background(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.tasks.append(asyncio.ensure_future(self._every(POLL_INTERVAL_S, self.refresh_policy)))
        self.tasks.append(asyncio.ensure_future(self._every(SEAL_CHECK_INTERVAL_S, self.seal)))
        self.tasks.append(asyncio.ensure_future(self._every(EXPIRY_INTERVAL_S, self.expire)))
        self.tasks.append(asyncio.ensure_future(self._every(EXPIRY_INTERVAL_S, self.replay_spool)))
        self.tasks.append(asyncio.ensure_future(self._every(WRITE_OUT_INTERVAL_S, self.write_out)))

    async def write_out(self) -> int:
        """Write the ledger's latest effects out to the store's tables (a no-op where they are written inline)."""
        return int(await self.store.write_out())

    async def expire(self) -> int:
        """Settle the holds whose lease ran out (their requests vanished), each with its expire row."""
        now = self.clock()
        # The store's own version, not this replica's snapshot of it (up to a poll interval old).
        version = await self.store.policy_version()

        def entry(hold: HoldInfo) -> dict[str, Any]:
            return expiry_entry(now, hold, self.config.tenant, version)
        return int(await self.store.expire_holds(now, entry))

    async def seal(self, final: bool = False) -> dict[str, Any] | None:
        """Append a signed checkpoint when one is due (see p402.prove.checkpoints); `final`: when
        any row is unsealed (the gateway is stopping)."""
        if self.checkpointer is None:
            return None
        try:
            return await self.checkpointer.maybe_seal(self.store, self.clock(), final=final)
        except LedgerCorrupt as exc:
            # Never sign over a broken chain; say so loudly, keep serving (the
            # chain's own verification still names the bad row).
            log.error("ledger does not verify; not sealing: %s", exc)
            return None

    async def replay_spool(self) -> int:
        return await self.spool.replay(self.store)

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except StoreUnavailable as exc:
                log.warning("background %s: store unavailable: %s", getattr(job, "__name__", job), exc)
            except Exception:  # a background duty must never die silently
                log.exception("background job failed")

    async def close(self) -> None:
        serving = bool(self.tasks)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for p in self.providers.values():
            await p.close()
        if serving:  # a gateway that stops seals its last rows: none wait unsealed for the next start
            try:
                await self.seal(final=True)
            except StoreError as exc:
                log.warning("no final checkpoint: %s", exc)
        if self.checkpointer is not None and self.checkpointer.lock is not None:
            # Hand the sealer's role to another replica now, not when the process dies.
            self.checkpointer.lock.release()
        await self.store.close()


def default_spool_path(store_url: str) -> str:
    """Beside a SQLite store (`./p402.db` -> `./p402.spool.jsonl`). For PostgreSQL, in the working
    directory, named after the database URL: a spool replays only into the store it was refused
    by, and a gateway that changes database does not replay its old refusals into the new one.
    (A hash: the URL may hold a password.)"""
    if store_url.startswith("sqlite:///"):
        db = store_url.removeprefix("sqlite:///").partition("?")[0]
        return str(Path(db if db != ":memory:" else "p402").with_suffix(".spool.jsonl"))
    return f"p402-{hashlib.sha256(store_url.encode()).hexdigest()[:12]}.spool.jsonl"


async def build_runtime(config: Config, apply: bool = True, clock: Callable[[], datetime] = utcnow,
                        spool_path: str | None = None) -> Runtime:
    """Open the store, apply the config (declarative), load policy, build the gateway."""
    config = priced_models(config)
    store = await open_store(config.store)
    if apply:
        await apply_config(store, config, actor=f"config:{config.source}", now=clock())
    policies = PolicyCache(config, store, clock)
    await policies.refresh(force=True)
    keys = KeyRing(store)
    providers = build_providers(config)
    metrics = Metrics()
    if spool_path is None:
        spool_path = default_spool_path(config.store)
    spool = FileSpool(spool_path)
    warm(tuple({m.tokenizer for m in config.models}))
    gateway = Gateway(store, providers, policies, keys, metrics, spool, clock, config.hold_ttl_s)
    signer = Signer.load_or_create(config.signing_key)
    # One sealer per ledger: a file lock beside a SQLite store; an advisory lock in PostgreSQL,
    # whose replicas may run on different machines.
    seal_lock = store.seal_lock() if hasattr(store, "seal_lock") else FileSealLock(config.signing_key + ".seal-lock")
    checkpointer = Checkpointer(signer, config.tenant, config.checkpoint_interval_s, config.checkpoint_max_events,
                                lock=seal_lock)
    return Runtime(config, store, policies, keys, providers, metrics, spool, gateway, clock,
                   signer=signer, checkpointer=checkpointer)
