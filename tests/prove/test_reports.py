"""CSV and FinOps FOCUS exports: readable columns, exact money, FOCUS 1.2 types and values."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson

from p402.prove.export import CSV_COLUMNS, csv_lines
from p402.prove.focus import FOCUS_COLUMNS, focus_lines
from p402.stores.sqlite import SqliteStore

from .ledgers import T0, decision, record_calls, run, settlement, who

# FOCUS 1.2 columns this export promises, with their data types (the spec's "Mandatory" set that applies to us).
FOCUS_TYPES = {
    "BilledCost": "decimal", "EffectiveCost": "decimal", "ListCost": "decimal", "ContractedCost": "decimal",
    "BillingCurrency": "currency", "BillingPeriodStart": "datetime", "BillingPeriodEnd": "datetime",
    "ChargePeriodStart": "datetime", "ChargePeriodEnd": "datetime", "ChargeCategory": "string",
    "ChargeClass": "string", "ChargeDescription": "string", "ServiceName": "string", "ServiceCategory": "string",
    "ProviderName": "string", "PublisherName": "string", "InvoiceIssuerName": "string", "ResourceId": "string",
    "ResourceName": "string", "SkuId": "string", "SkuPriceId": "string", "PricingQuantity": "decimal",
    "PricingUnit": "string", "ConsumedQuantity": "decimal", "ConsumedUnit": "string", "RegionId": "string",
    "SubAccountId": "string", "SubAccountName": "string", "Tags": "json",
}
FOCUS_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
SERVICE_CATEGORIES = {"AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
                      "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
                      "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security",
                      "Storage", "Web", "Other"}


def table(lines: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(lines.decode())))


def focus_time(text: str) -> datetime:
    assert FOCUS_DATETIME.fullmatch(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_csv_has_a_row_per_decision_and_settlement_with_the_decisions_attribution(store: SqliteStore) -> None:
    run(record_calls(store, 10))
    rows = table(b"".join(csv_lines(store.chain())))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("decision") == 10 and kinds.count("settle") == 8
    settle = next(r for r in rows if r["kind"] == "settle")
    made = next(r for r in rows if r["event_id"] == settle["ref"])
    # The settlement row carries who and what from its decision, and its own money.
    for column in ("department", "employee", "key", "model", "provider"):
        assert settle[column] == made[column] and settle[column]
    assert Decimal(settle["cost_usd"]) > 0 and Decimal(made["estimate_usd"]) > 0
    denial = next(r for r in rows if r["outcome"] == "deny")
    assert denial["deny_code"] == "BUDGET_EXCEEDED" and denial["recovery_action"] == "wait_for_reset"


def test_csv_defuses_spreadsheet_formulas(store: SqliteStore) -> None:
    run(store.record(decision(T0, model="=HYPERLINK(\"http://x\")")))
    rows = table(b"".join(csv_lines(store.chain())))
    assert rows[0]["model"].startswith("'=")


def test_focus_rows_have_the_required_columns_types_and_values(store: SqliteStore) -> None:
    run(record_calls(store, 15))
    settled = [orjson.loads(r.body) for r in store.chain() if b'"kind":"settle"' in r.body]
    rows = table(b"".join(focus_lines(store.chain())))
    assert len(rows) == len(settled) == 12  # one per settled call; denials cost nothing
    assert set(FOCUS_TYPES) <= set(FOCUS_COLUMNS) == set(rows[0])
    assert all(c in FOCUS_TYPES or c.startswith("x_") for c in FOCUS_COLUMNS)  # extras use FOCUS's x_ prefix
    for row in rows:
        for column, kind in FOCUS_TYPES.items():
            value = row[column]
            if kind == "decimal":
                assert Decimal(value) >= 0 and "e" not in value.lower()
            elif kind == "datetime":
                focus_time(value)
            elif kind == "currency":
                assert re.fullmatch(r"[A-Z]{3}", value) and value == "USD"
            elif kind == "json":
                tags = orjson.loads(value)
                assert isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())
        assert row["ChargeCategory"] == "Usage" and row["ChargeClass"] in ("", "Correction")
        assert row["ServiceCategory"] in SERVICE_CATEGORIES
        assert row["PricingUnit"] == row["ConsumedUnit"] == "Tokens" and Decimal(row["ConsumedQuantity"]) > 0
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        start, end = focus_time(row["ChargePeriodStart"]), focus_time(row["ChargePeriodEnd"])
        period_start, period_end = focus_time(row["BillingPeriodStart"]), focus_time(row["BillingPeriodEnd"])
        assert period_start <= start < end <= period_end
    # Money is exact: the FOCUS total is the ledger's total to the nano-dollar.
    assert sum(Decimal(r["BilledCost"]) for r in rows) == sum(Decimal(b["cost_usd"]) for b in settled)
    tags = orjson.loads(next(r["Tags"] for r in rows if r["SubAccountId"] == "sales"))
    assert tags == {"department": "sales", "employee": "carol", "key": "k-carol", "project": "apollo"}


def test_focus_bills_an_orphaned_call_at_its_reservation_with_the_reserved_token_bound(store: SqliteStore) -> None:
    made = decision(T0, who(), input_tokens=300, max_tokens=500, estimate_usd="0.00035")
    run(store.record(made))
    run(store.record(settlement(T0 + timedelta(minutes=15), made, "0.00035", kind="expire", input_tokens=0,
                                output_tokens=0, flags=["orphaned"])))
    released = decision(T0 + timedelta(minutes=16))
    run(store.record(released))
    run(store.record(settlement(T0 + timedelta(minutes=17), released, "0", kind="release", output_tokens=0)))
    rows = table(b"".join(focus_lines(store.chain())))
    assert len(rows) == 1  # the free release is not a charge
    row = rows[0]
    assert row["BilledCost"] == "0.00035" and row["ConsumedQuantity"] == "800"
    assert "orphaned" in row["ChargeDescription"] and row["x_Flags"] == "orphaned"
    assert row["ChargePeriodStart"] == "2026-03-02T09:00:00Z" and row["ChargePeriodEnd"] == "2026-03-02T09:15:00Z"
    assert row["BillingPeriodStart"] == "2026-03-01T00:00:00Z" and row["BillingPeriodEnd"] == "2026-04-01T00:00:00Z"


def test_focus_counts_every_choice_of_an_orphaned_call_with_several(store: SqliteStore) -> None:
    made = decision(T0, who(), input_tokens=300, max_tokens=500, completions=3, estimate_usd="0.00095")
    run(store.record(made))
    run(store.record(settlement(T0 + timedelta(minutes=15), made, "0.00095", kind="expire", input_tokens=0,
                                output_tokens=0, flags=["orphaned"])))
    [row] = table(b"".join(focus_lines(store.chain())))
    assert row["ConsumedQuantity"] == str(300 + 3 * 500)


def test_exports_write_whole_files(store: SqliteStore, tmp_path: Path) -> None:
    from p402.prove.export import write_lines

    run(record_calls(store, 3))
    out = tmp_path / "focus.csv"
    write_lines(focus_lines(store.chain()), out)
    assert out.read_text().startswith("BilledCost,") and not (tmp_path / "focus.csv.part").exists()
