"""What every store lays out the same way: the ledger's indexed columns and the spend rollup's keys.

Both stores hash the same bodies and verify with the same `core.ledger.verify_chain`,
so the columns that copy body fields (and are checked against them) are one list.
"""

from __future__ import annotations

__all__ = ["LEDGER_COLUMNS", "SPEND_KEYS"]

# Ledger columns that copy a body field (column -> body key); verify checks them.
LEDGER_COLUMNS = {"event_id": "event_id", "ts": "ts", "kind": "kind", "deny_code": "deny_code",
                  "department": "department", "employee": "employee", "project": "project",
                  "customer": "customer", "feature": "feature", "workflow": "workflow", "key_id": "key"}
# The attribution a spend rollup row is keyed by (body keys), after its day.
SPEND_KEYS = ("department", "employee", "project", "customer", "feature", "workflow", "key", "model")
