-- p402 SQLite schema. Money columns are integer nano-USD.
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
-- Policy objects (budgets, rules, departments, employees, declared attributions, mandates, overrides).
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  owner_kind TEXT NOT NULL, owner_id TEXT NOT NULL, department TEXT NOT NULL DEFAULT '',
  employee TEXT NOT NULL DEFAULT '', workflow TEXT NOT NULL DEFAULT '', prefix TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL, revoked_at TEXT);
-- Balances per budget, member and window. This table, `holds` and `spend` are the ledger's effects
-- folded up to meta `folded_seq` (p402/stores/sqlite.py); the store folds in later rows itself.
CREATE TABLE IF NOT EXISTS counters (
  budget_id TEXT NOT NULL, member TEXT NOT NULL, window INTEGER NOT NULL,
  settled INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (budget_id, member, window)) WITHOUT ROWID;
-- Live holds only (requests in flight), as of `folded_seq`: the store keeps the current ones in memory.
CREATE TABLE IF NOT EXISTS holds (
  id TEXT PRIMARY KEY, event_id TEXT NOT NULL, amount INTEGER NOT NULL, keys TEXT NOT NULL,
  expires_at REAL NOT NULL, department TEXT NOT NULL DEFAULT '', context TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID;
-- Spend rollups, one row per day and attribution, as of `folded_seq`.
CREATE TABLE IF NOT EXISTS spend (
  day INTEGER NOT NULL, department TEXT NOT NULL, employee TEXT NOT NULL, project TEXT NOT NULL,
  customer TEXT NOT NULL, feature TEXT NOT NULL, workflow TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
  cost INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0, denied INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (day, department, employee, project, customer, feature, workflow, key_id, model)) WITHOUT ROWID;
-- The hash-chained ledger. Indexed columns are copies of body fields, checked by verify.
-- `effects`: what the row changes in counters, holds and spend (the format: p402/stores/fold.py);
-- `{}` when nothing. The store adds a trigger that refuses rows without it (an earlier p402's).
CREATE TABLE IF NOT EXISTS ledger (
  seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL,
  deny_code TEXT, department TEXT, employee TEXT, project TEXT, customer TEXT, feature TEXT,
  workflow TEXT, key_id TEXT,
  body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, effects TEXT);
CREATE INDEX IF NOT EXISTS ledger_event ON ledger (event_id);
CREATE INDEX IF NOT EXISTS ledger_deny ON ledger (deny_code, seq) WHERE deny_code IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
