"""Application operations shared by the CLI and the admin API: apply, keys, budgets, spend, policy snapshots."""
