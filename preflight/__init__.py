"""preflight: checks a GPU cluster, its software and a fine-tuning job before the job starts."""

__version__ = "0.1.0"
