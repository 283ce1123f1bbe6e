"""Keys: TrainingArguments keys transformers renamed or removed, keys written twice, and the
sequence length against the model's position embeddings."""

from __future__ import annotations

from collections.abc import Iterator

from packaging.version import InvalidVersion, Version

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job
from preflight.trainconfig.rule import Located, as_count, rule

# key -> (replacement or None, first transformers release without it). Verified against the
# training_args.py of the PyPI wheels: evaluation_strategy is a field through 4.50.0 and absent
# from 4.51.0; the others are fields in 4.57.6 and absent from 5.0.0.
REMOVED: dict[str, tuple[str | None, str]] = {
    "evaluation_strategy": ("eval_strategy", "4.51.0"),
    "no_cuda": ("use_cpu", "5.0.0"),
    "per_gpu_train_batch_size": ("per_device_train_batch_size", "5.0.0"),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", "5.0.0"),
    "fp16_backend": (None, "5.0.0"),
    "push_to_hub_model_id": ("hub_model_id", "5.0.0"),
    "overwrite_output_dir": (None, "5.0.0"),
    "use_mps_device": (None, "5.0.0"),
    "tpu_num_cores": (None, "5.0.0"),
    "save_safetensors": (None, "5.0.0"),
}
# deprecated in 5.0.0 ("will be removed in v5.2"), still accepted: reported only on transformers >= 5
DEPRECATED_V5: dict[str, str] = {
    "warmup_ratio": "warmup_steps (a float below 1 is a ratio)",
    "logging_dir": "the TENSORBOARD_LOGGING_DIR environment variable",
}
LLAMAFACTORY_OWN = ("overwrite_output_dir",)  # LLaMA-Factory reads it itself (hparams/parser.py)


def _version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


@rule("config.renamed_keys", "TrainingArguments keys that still exist")
def renamed_keys(job: Job) -> Iterator[Located]:
    """TrainingArguments keys transformers removed (``evaluation_strategy`` -> ``eval_strategy`` in
    4.51; ``no_cuda``, ``per_gpu_*``, ``fp16_backend``, ``overwrite_output_dir`` ... in 5.0): an
    unknown key makes ``TrainingArguments(**config)`` raise TypeError and HfArgumentParser (which
    LLaMA-Factory uses) raise "Some keys are not used by the HfArgumentParser". A failure when the
    job's transformers version (from ``--facts``, else this machine) has removed the key; a warning
    when the version is unknown or still accepts it (the config breaks on upgrade)."""
    version = _version(job.hardware.transformers)
    for f in job.of_kind("hf", "llamafactory"):
        for key, (new, removed_in) in REMOVED.items():
            if f.data.get(key) is None or (f.kind == "llamafactory" and key in LLAMAFACTORY_OWN):
                continue  # absent, or null as in a saved training_args.json dump: not the user's choice
            fix = f"rename {key} to {new}" if new else f"remove {key}"
            if version is None:
                yield Located(f.at(key), warn(f"{key} is not a TrainingArguments key from transformers {removed_in} on",
                                              f"a key transformers {removed_in}+ knows", fix))
            elif version >= Version(removed_in):
                yield Located(f.at(key), fail(
                    f"{key}: removed in transformers {removed_in}; transformers {version} ({job.hardware.source}) "
                    "refuses the config", "a current key", fix))
            else:
                yield Located(f.at(key), warn(
                    f"{key}: transformers {version} still accepts it; {removed_in} refuses it", "a current key", fix))
        if version is not None and version >= Version("5.0.0"):
            for key, instead in DEPRECATED_V5.items():
                if f.data.get(key) is not None:
                    yield Located(f.at(key), warn(f"{key} is deprecated in transformers {version} (removed in 5.2)",
                                                  instead, f"use {instead}"))


@rule("config.duplicate_key", "No key written twice")
def duplicate_key(job: Job) -> Iterator[Located]:
    """A key written twice in one mapping: YAML and JSON readers keep the last one silently, so the
    first value the user sees is not the one used (DeepSpeed's own loader raises on it:
    ``dict_raise_error_on_duplicate_keys``, deepspeed runtime/config.py; through the HF Trainer it
    does not). A warning."""
    for f in job.files:
        for keys, first, again in f.duplicates:
            name = ".".join(keys)
            yield Located(f"{f.path}:{again}", warn(f"{name} written twice (line {first} and line {again}); "
                                                    f"the value at line {again} wins", "each key once",
                                                    f"delete one of the two {keys[-1]} lines"))


@rule("config.seq_len_positions", "Sequence length within the model's positions")
def seq_len_positions(job: Job) -> Iterator[Located]:
    """A cutoff/sequence length above the model's ``max_position_embeddings`` (its config.json):
    learned position embeddings index out of range, and rotary models run at positions they never
    saw in pre-training unless RoPE scaling is configured. A warning; needs the model folder to be
    local."""
    s = job.setting("seq_len")
    if s is None:
        return
    length = as_count(s.value)
    if job.model is None or job.model.max_position_embeddings is None:
        yield Located(s.where, skip(f"{s.name} = {s.value}; model config not local (no max_position_embeddings)"))
        return
    limit = job.model.max_position_embeddings
    if length is not None and length > limit:
        t = job.trainer
        rope = t is not None and (t.get("rope_scaling") is not None)
        if rope:
            yield Located(s.where, passed(f"{s.name} = {length} > {limit}, with rope_scaling at {t.at('rope_scaling')}"))  # type: ignore[union-attr]
            return
        yield Located(s.where, warn(f"{s.name} = {length}, but {job.model.path} has max_position_embeddings {limit}",
                                    f"<= {limit}", f"set {s.name}: {limit} (or configure rope_scaling)"))
        return
    yield Located(s.where, passed(f"{s.name} = {s.value} <= max_position_embeddings {limit}"))

