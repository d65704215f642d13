"""Application operations shared by the CLI, the admin API and the runtime: apply, keys, budgets, spend,
policy snapshots, the spool and metrics."""
