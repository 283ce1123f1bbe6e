"""`preflight data`: fine-tuning data checked record by record and across splits, streamed."""
