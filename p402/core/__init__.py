"""The pure domain of p402: money, scopes, periods, budgets, decisions, ledger hashing.

Standard library only, no I/O; the clock is always passed in.
"""
