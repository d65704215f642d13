"""Sealing and auditing a PostgreSQL ledger while concurrent writers append to it.

PostgreSQL commits concurrent transactions in an order of its own; the sealer
reads only what is committed and must never see a gap that later fills in (it
would report corruption) nor sign a root the auditor cannot reproduce.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
from psycopg import sql

from p402.prove.audit import verify_rows
from p402.prove.checkpoints import Checkpointer
from p402.prove.signing import Signer
from p402.stores.postgres import PostgresStore
from tests.gatewaykit import PG_URL

from .ledgers import T0, decision, settlement


def test_sealing_under_concurrent_writers_yields_a_ledger_that_verifies(signer: Signer) -> None:
    schema = f"p402_prove_{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[int, int]:
        store = await PostgresStore.connect(PG_URL, schema)
        sealer = Checkpointer(signer, "acme", interval_s=1, max_events=15)
        try:
            async def writer() -> None:
                for i in range(12):
                    now = T0 + timedelta(seconds=i)
                    made = decision(now)
                    await store.record(made)
                    await store.record(settlement(now, made))

            async def sealing(stop: asyncio.Event) -> int:
                sealed, tick = 0, 0
                while not stop.is_set():
                    tick += 1
                    if await sealer.maybe_seal(store, T0 + timedelta(seconds=tick)) is not None:
                        sealed += 1
                    await asyncio.sleep(0.005)
                return sealed

            stop = asyncio.Event()
            sealing_task = asyncio.create_task(sealing(stop))
            await asyncio.gather(*(writer() for _ in range(4)))
            stop.set()
            sealed = await sealing_task
            final = await sealer.maybe_seal(store, T0 + timedelta(hours=1))
            report = verify_rows(store.chain(), signer.public_key)
            assert report.ok, report.summary()
            # The loop may already have sealed every row (then nothing is left to seal):
            # either way, every row but the last checkpoint itself is under a signature.
            assert report.sealed_through == report.last_seq - 1
            if final is not None:
                assert report.sealed_through == final["covered_seq"]
            return sealed + (final is not None), report.checkpoints
        finally:
            await store.close()
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    sealed_while_writing, checkpoints = asyncio.run(main())
    assert sealed_while_writing >= 1 and checkpoints == sealed_while_writing  # every seal is one checkpoint
