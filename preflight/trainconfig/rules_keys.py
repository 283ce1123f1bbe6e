"""Keys: TrainingArguments keys transformers renamed or removed, keys written twice, and the
sequence length against the model's position embeddings."""

from __future__ import annotations

from collections.abc import Iterator

from packaging.version import InvalidVersion, Version

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job
from preflight.trainconfig.readers import ConfigFile
from preflight.trainconfig.removed_keys import (
    LLAMAFACTORY_OWN,
    REMOVED,
    at_default,
    fix_for,
    is_dump,
)
from preflight.trainconfig.rule import Located, as_count, rule


def _version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _one(f: ConfigFile, key: str, version: Version | None, source: str) -> Located:
    entry = REMOVED[key]
    fix = fix_for(key)
    if version is None:
        return Located(f.at(key), warn(f"{key} is not a TrainingArguments key from transformers {entry.removed_in} on",
                                       f"a key transformers {entry.removed_in}+ knows", fix))
    if version >= Version(entry.removed_in):
        return Located(f.at(key), fail(
            f"{key}: removed in transformers {entry.removed_in}; transformers {version} ({source}) refuses the config",
            "a current key", fix))
    said = "deprecated in" if entry.deprecated_from else "still accepted by"
    return Located(f.at(key), warn(f"{key}: {said} transformers {version}; {entry.removed_in} refuses it",
                                   "a current key", fix))


@rule("config.renamed_keys", "TrainingArguments keys that still exist")
def renamed_keys(job: Job) -> Iterator[Located]:
    """TrainingArguments keys transformers removed (``evaluation_strategy`` -> ``eval_strategy`` in
    4.51; ``no_cuda``, ``per_gpu_*``, ``fp16_backend``, ``overwrite_output_dir`` ... in 5.0;
    ``warmup_ratio`` and ``logging_dir``, deprecated in 5.0, in 5.15; table and sources in
    ``removed_keys.py``): an unknown key makes ``TrainingArguments(**config)`` raise TypeError and
    HfArgumentParser (which LLaMA-Factory uses) raise "Some keys are not used by the
    HfArgumentParser". A failure when the job's transformers version (from ``--facts``, else this
    machine) has removed the key; a warning when the version is unknown or still accepts it (the
    config breaks on upgrade). Deprecated keys are reported only from the release that deprecated
    them. A saved ``training_args.json`` holds every field of the release that wrote it: its removed
    keys at their default values are one finding, and only when the job's release refuses them."""
    version = _version(job.hardware.transformers)
    source = job.hardware.source
    for f in job.of_kind("hf", "llamafactory"):
        defaults: list[str] = []
        for key, entry in REMOVED.items():
            if f.data.get(key) is None or (f.kind == "llamafactory" and key in LLAMAFACTORY_OWN):
                continue  # absent, or null as in a saved training_args.json dump: not the user's choice
            if entry.deprecated_from and (version is None or version < Version(entry.deprecated_from)):
                continue
            if is_dump(f) and at_default(f, key):
                defaults.append(key)
                continue
            yield _one(f, key, version, source)
        refused = [k for k in defaults if version is not None and version >= Version(REMOVED[k].removed_in)]
        if refused:
            yield Located(f.at(refused[0]), fail(
                f"a training_args.json saved by an older transformers: transformers {version} ({source}) refuses "
                f"{len(refused)} key(s) it holds at their default values: {', '.join(refused)}",
                f"only keys transformers {version} knows", f"delete {', '.join(refused)} (defaults: nothing changes)"))


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

