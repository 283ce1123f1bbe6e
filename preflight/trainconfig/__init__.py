"""`preflight config`: judge training configs (HF TrainingArguments, LLaMA-Factory, Axolotl,
DeepSpeed, Accelerate) before the job starts; every finding points at ``file:line``."""
