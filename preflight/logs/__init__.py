"""`preflight logs`: read the logs trainers write and diagnose the run."""
