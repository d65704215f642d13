"""The SQL the PostgreSQL store speaks, in one place (see schema_postgres.sql for the tables).

Every statement takes `%s` parameters (psycopg server-side binding). Counter
keys travel as three parallel arrays (budget ids, members, window starts),
unnested on the server, so one statement covers every counter of a request.
"""

from __future__ import annotations

from typing import Iterable

from p402.core.policy import CounterKey

# Must equal SqliteStore's rollup attribution (the contract suite checks both stores agree).
GROUPS = ("department", "employee", "project", "customer", "feature", "workflow", "key_id", "model")

KEYS = "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
ADD_COUNTERS = f"INSERT INTO counters (budget_id, member, window_start) {KEYS} ON CONFLICT DO NOTHING"
LOCK_COUNTERS = ("SELECT budget_id, member, window_start, settled, reserved FROM counters "
                 f"WHERE (budget_id, member, window_start) IN ({KEYS}) "
                 "ORDER BY budget_id, member, window_start FOR UPDATE")
RESERVE = ("INSERT INTO counters (budget_id, member, window_start, reserved) "
           "SELECT b, m, w, %s::bigint FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(b, m, w) "
           "ON CONFLICT (budget_id, member, window_start) "
           "DO UPDATE SET reserved = counters.reserved + excluded.reserved")
ADD_HOLD = ("INSERT INTO holds (id, event_id, amount, keys, expires_at, department, context) "
            "VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s::jsonb)")
LOCK_HOLD = "SELECT amount, context FROM holds WHERE id = %s FOR UPDATE"
HOLD_KEYS = "SELECT k->>0, k->>1, (k->>2)::bigint FROM holds h, jsonb_array_elements(h.keys) k WHERE h.id = %s"
LOCK_HOLD_COUNTERS = (f"SELECT 1 FROM counters WHERE (budget_id, member, window_start) IN ({HOLD_KEYS}) "
                      "ORDER BY budget_id, member, window_start FOR UPDATE")
# Runs after LOCK_HOLD_COUNTERS took the locks in order, so its join order does not matter.
SETTLE_COUNTERS = ("UPDATE counters c SET reserved = c.reserved - h.amount, "
                   "settled = c.settled + COALESCE(%s::bigint, h.amount) "
                   "FROM holds h, jsonb_array_elements(h.keys) k WHERE h.id = %s "
                   "AND c.budget_id = k->>0 AND c.member = k->>1 AND c.window_start = (k->>2)::bigint")
DROP_HOLD = "DELETE FROM holds WHERE id = %s"
COUNT_SPEND = ("INSERT INTO spend (day, department, employee, project, customer, feature, workflow, key_id, model, "
               "cost, requests, denied) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
               "ON CONFLICT (day, department, employee, project, customer, feature, workflow, key_id, model) "
               "DO UPDATE SET cost = spend.cost + excluded.cost, requests = spend.requests + excluded.requests, "
               "denied = spend.denied + excluded.denied")
BUMP_VERSION = ("INSERT INTO meta (k, v) VALUES ('policy_version', '1') ON CONFLICT (k) "
                "DO UPDATE SET v = (meta.v::bigint + 1)::text RETURNING v::bigint")
READ_VERSION = "SELECT v::bigint FROM meta WHERE k = 'policy_version'"
KEY_COLUMNS = "id, tenant, owner_kind, owner_id, department, employee, workflow, revoked_at, created_at, prefix"
UPSERT_KEY = ("INSERT INTO api_keys (id, secret_hash, tenant, owner_kind, owner_id, department, employee, workflow, "
              "prefix, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
              "ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, owner_kind = excluded.owner_kind, "
              "owner_id = excluded.owner_id, department = excluded.department, employee = excluded.employee, "
              "workflow = excluded.workflow, tenant = excluded.tenant")


def key_arrays(keys: list[CounterKey]) -> tuple[list[str], list[str], list[int]]:
    """The three parallel arrays that `KEYS` unnests."""
    return [k.budget_id for k in keys], [k.member for k in keys], [k.window for k in keys]


def lock_order(keys: Iterable[CounterKey]) -> list[CounterKey]:
    """Distinct keys in the order every transaction locks counters in.

    Python orders str by code point, as the counters' "C" collation does in SQL,
    so inserts sorted here and `ORDER BY ... FOR UPDATE` there agree.
    """
    return sorted(set(keys), key=lambda k: (k.budget_id, k.member, k.window))
