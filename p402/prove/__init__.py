"""Prove: the ledger an auditor can verify without trusting the gateway.

- `merkle`: RFC 9162 Merkle trees, inclusion and consistency proofs.
- `signing`: the gateway's Ed25519 checkpoint key.
- `checkpoints`: signed checkpoints as ledger rows, and the incremental sealer.
- `audit`: walk a chain and check hashes and checkpoints; name the first fault.
- `export` / `focus`: streaming jsonl, csv and FinOps FOCUS exports; offline verification.
- `explain`: a ledger row in plain language.
- `simulate`: replay recorded traffic against a proposed budget tree.

Imports only `p402.core`, `p402.errors`, the standard library, cryptography and orjson.
"""
