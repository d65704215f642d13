"""Budget stores: SQLite (embedded default) and PostgreSQL (replicas)."""
