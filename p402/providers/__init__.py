"""Provider adapters: one module per provider (wire format, translation, usage, errors)."""
