"""TrainingArguments keys transformers removed, the release that removed each, and the value each had
by default (what a saved ``training_args.json`` holds when the user never set it).

Read from the ``training_args.py`` of the PyPI wheels 4.45.2 through 5.24.0 (every minor release,
and the patch releases around each removal): a key is listed with the first release whose
``TrainingArguments`` dataclass no longer has the field. ``TrainingArguments(**config)`` then raises
TypeError and ``HfArgumentParser`` (LLaMA-Factory's reader) "Some keys are not used by the
HfArgumentParser".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight.trainconfig.readers import ConfigFile


@dataclass(frozen=True)
class Removed:
    replacement: str | None  # the key to use instead, or None (just delete it)
    removed_in: str  # the first transformers release without the field
    defaults: tuple[Any, ...]  # its default value(s) in the releases that had it
    deprecated_from: str | None = None  # reported only from this release on (deprecated, still accepted)


REMOVED: dict[str, Removed] = {
    "evaluation_strategy": Removed("eval_strategy", "4.51.0", ("no",)),
    "dispatch_batches": Removed(None, "4.51.0", ()),
    "split_batches": Removed(None, "4.51.0", ()),
    "tp_size": Removed(None, "4.52.0", (0,)),
    "use_ipex": Removed(None, "4.57.0", (False,)),
    "no_cuda": Removed("use_cpu", "5.0.0", (False,)),
    "per_gpu_train_batch_size": Removed("per_device_train_batch_size", "5.0.0", ()),
    "per_gpu_eval_batch_size": Removed("per_device_eval_batch_size", "5.0.0", ()),
    "fp16_backend": Removed(None, "5.0.0", ("auto",)),
    "half_precision_backend": Removed(None, "5.0.0", ("auto",)),
    "fp16_opt_level": Removed(None, "5.0.0", ("O1",)),
    "push_to_hub_model_id": Removed("hub_model_id", "5.0.0", ()),
    "push_to_hub_organization": Removed("hub_model_id", "5.0.0", ()),
    "push_to_hub_token": Removed("hub_token", "5.0.0", ()),
    "overwrite_output_dir": Removed(None, "5.0.0", (False,)),
    "use_mps_device": Removed(None, "5.0.0", (False,)),
    "tpu_num_cores": Removed(None, "5.0.0", ()),
    "tpu_metrics_debug": Removed(None, "5.0.0", (False,)),
    "save_safetensors": Removed(None, "5.0.0", (True,)),
    "adafactor": Removed(None, "5.0.0", (False,)),
    "fsdp_min_num_params": Removed(None, "5.0.0", (0,)),
    "fsdp_transformer_layer_cls_to_wrap": Removed(None, "5.0.0", ()),
    "include_inputs_for_metrics": Removed("include_for_metrics", "5.0.0", (False,)),
    "include_tokens_per_second": Removed(None, "5.0.0", (False,)),
    "jit_mode_eval": Removed(None, "5.0.0", (False,)),
    "mp_parameters": Removed(None, "5.0.0", ("",)),
    "past_index": Removed(None, "5.0.0", (-1,)),
    "ray_scope": Removed(None, "5.0.0", ("last",)),
    "torchdynamo": Removed("torch_compile_backend", "5.0.0", ()),
    "use_legacy_prediction_loop": Removed(None, "5.0.0", (False,)),
    "group_by_length": Removed(None, "5.2.0", (False,), deprecated_from="5.0.0"),
    # "deprecated and will be removed in v5.2" (5.0.0 help text); actually removed in 5.15.0
    "warmup_ratio": Removed("warmup_steps", "5.15.0", (0.0,), deprecated_from="5.0.0"),
    "logging_dir": Removed(None, "5.15.0", (), deprecated_from="5.0.0"),
}
LLAMAFACTORY_OWN = ("overwrite_output_dir",)  # LLaMA-Factory's own argument (hparams/training_args.py)
FIXES = {  # where renaming is not the whole fix
    "warmup_ratio": "rename warmup_ratio to warmup_steps (a float below 1 is a ratio)",
    "logging_dir": "remove logging_dir and set the TENSORBOARD_LOGGING_DIR environment variable",
    "adafactor": "remove adafactor and set optim: adafactor",
    "fsdp_min_num_params": "move it into fsdp_config as min_num_params",
    "fsdp_transformer_layer_cls_to_wrap": "move it into fsdp_config as transformer_layer_cls_to_wrap",
}


def fix_for(key: str) -> str:
    entry = REMOVED[key]
    return FIXES.get(key) or (f"rename {key} to {entry.replacement}" if entry.replacement else f"remove {key}")


DUMP_MIN_KEYS = 60  # TrainingArguments.to_json_string() writes every field (4.45: 130, 5.x: about 110)


def is_dump(f: ConfigFile) -> bool:
    """A saved ``training_args.json`` (``TrainingArguments.to_json_string()``): every field written."""
    return f.kind == "hf" and len(f.data) >= DUMP_MIN_KEYS


def at_default(f: ConfigFile, key: str) -> bool:
    """The key holds the value transformers filled in, not one the user chose: its default, or in a
    dump the ``logging_dir`` that ``__post_init__`` derives (``OUTPUT_DIR/runs/DATE_HOST``) and the
    ``<PUSH_TO_HUB_TOKEN>`` mask ``to_dict`` writes for every ``*_token`` field."""
    value = f.data.get(key)
    if any(_same(value, d) for d in REMOVED[key].defaults):
        return True
    if not (is_dump(f) and isinstance(value, str)):
        return False
    return value == f"<{key.upper()}>" or key == "logging_dir" and "/runs/" in value.replace("\\", "/")


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(default, float):
        return isinstance(value, (int, float)) and value == default
    return type(value) is type(default) and value == default
