-- p402 PostgreSQL schema. Money columns are BIGINT nano-USD.
-- Mirrors schema_sqlite.sql; differences are commented. Idempotent: run on every connect
-- under an advisory lock, so replicas starting together do not race each other.
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
-- Policy objects (budgets, rules, departments, employees, declared attributions, mandates, overrides).
-- Bodies are kept as the exact JSON text written, like SQLite (jsonb would reorder keys).
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  owner_kind TEXT NOT NULL, owner_id TEXT NOT NULL, department TEXT NOT NULL DEFAULT '',
  employee TEXT NOT NULL DEFAULT '', workflow TEXT NOT NULL DEFAULT '', prefix TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL, revoked_at TEXT);
-- `window` is a reserved word in PostgreSQL, hence `window_start` (the window's start, Unix seconds).
-- The "C" collation makes the database's ORDER BY equal Python's str ordering (code points), so
-- every transaction locks counters in the same order whichever side sorted them: no deadlocks.
CREATE TABLE IF NOT EXISTS counters (
  budget_id TEXT COLLATE "C" NOT NULL, member TEXT COLLATE "C" NOT NULL, window_start BIGINT NOT NULL,
  settled BIGINT NOT NULL DEFAULT 0 CHECK (settled >= 0), reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  PRIMARY KEY (budget_id, member, window_start));
-- keys: [[budget_id, member, window_start], ...]; context: what the hold kept of its decision (attribution,
-- model, provider: p402/stores/layout.py hold_context), for the spend rollup and the expiry row.
CREATE TABLE IF NOT EXISTS holds (
  id TEXT PRIMARY KEY, event_id TEXT NOT NULL, amount BIGINT NOT NULL, keys JSONB NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL, department TEXT NOT NULL DEFAULT '', context JSONB NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS holds_expiry ON holds (expires_at);
-- Spend rollups, one row per day and attribution, kept in the settlement's transaction.
CREATE TABLE IF NOT EXISTS spend (
  day INTEGER NOT NULL, department TEXT NOT NULL, employee TEXT NOT NULL, project TEXT NOT NULL,
  customer TEXT NOT NULL, feature TEXT NOT NULL, workflow TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
  cost BIGINT NOT NULL DEFAULT 0, requests BIGINT NOT NULL DEFAULT 0, denied BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (day, department, employee, project, customer, feature, workflow, key_id, model));
-- The hash-chained ledger. Indexed columns are copies of body fields, checked by verify.
-- body is TEXT, byte-for-byte what was hashed (jsonb would normalise it and break the hash).
CREATE TABLE IF NOT EXISTS ledger (
  seq BIGINT PRIMARY KEY, event_id TEXT NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL,
  deny_code TEXT, department TEXT, employee TEXT, project TEXT, customer TEXT, feature TEXT,
  workflow TEXT, key_id TEXT,
  body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_event ON ledger (event_id);
CREATE INDEX IF NOT EXISTS ledger_deny ON ledger (deny_code, seq) WHERE deny_code IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
-- The chain's head: the last row's seq and hash (and the hash before it). One row, updated by
-- every append in the same statement that inserts the ledger row; that row lock serialises
-- appends across all replicas, so there is one chain, and commits happen in seq order.
-- Seeded (seq 0, genesis hash) by the store on connect.
CREATE TABLE IF NOT EXISTS ledger_head (
  one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL, hash TEXT NOT NULL,
  prev_hash TEXT NOT NULL DEFAULT '');
