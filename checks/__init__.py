"""The rules: one module per area, each check one decorated pure function (see preflight.registry)."""
