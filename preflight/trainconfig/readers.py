"""Read training configs with the line of every key, and say what kind each file is.

Kinds: ``deepspeed`` (DeepSpeed JSON), ``accelerate`` (``accelerate config`` YAML),
``llamafactory`` (LLaMA-Factory YAML), ``axolotl`` (Axolotl YAML) and ``hf`` (Hugging Face
``TrainingArguments`` as JSON or YAML, e.g. a saved ``training_args.json``). Files are only read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.errors import InputError
from preflight.trainconfig.yaml_lines import parse_yaml

KINDS = {
    "deepspeed": "DeepSpeed config",
    "accelerate": "Accelerate config",
    "llamafactory": "LLaMA-Factory config",
    "axolotl": "Axolotl config",
    "hf": "Hugging Face TrainingArguments",
}
TRAINER_KINDS = ("llamafactory", "axolotl", "hf")
MAX_BYTES = 16 * 1024 * 1024

KeyPath = tuple[str, ...]


@dataclass
class ConfigFile:
    path: Path
    kind: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[tuple[KeyPath, int, int]] = field(default_factory=list)
    followed_from: str | None = None  # "other.yaml:12" when reached through a ``deepspeed:`` key
    key_prefix: KeyPath = ()  # ("deepspeed",) for a DeepSpeed config written inline in another file

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def has(self, *keys: str) -> bool:
        return self.get(*keys) is not None

    def get(self, *keys: str) -> Any:
        node: Any = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def line(self, *keys: str) -> int | None:
        for n in range(len(keys), 0, -1):  # the deepest key that has a line
            if keys[:n] in self.lines:
                return self.lines[keys[:n]]
        return None

    def at(self, *keys: str) -> str:
        """``file:line`` of a key (the file alone when the key is not written in it)."""
        number = self.line(*keys) if keys else None
        if number is None and self.key_prefix and self.followed_from:
            return self.followed_from  # inline in another file: where the block starts
        return f"{self.path}:{number}" if number else str(self.path)


# -- JSON with lines ---------------------------------------------------------------------------
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.DOTALL)


def _json_lines(text: str) -> tuple[dict[KeyPath, int], list[tuple[KeyPath, int, int]]]:
    """The line of every object key, and keys written twice in one object (validated JSON only:
    the tokenizer trusts its structure)."""
    lines: dict[KeyPath, int] = {}
    duplicates: list[tuple[KeyPath, int, int]] = []
    stack: list[list[Any]] = []  # [opening bracket, key path, list index, current key]
    line, pos, expect_key = 1, 0, False
    for match in _TOKEN.finditer(text):
        line += text.count("\n", pos, match.start())
        pos = match.start()
        token = match.group()
        top = stack[-1] if stack else None
        if token in ("{", "["):
            if top is None:
                path: KeyPath = ()
            elif top[0] == "{":
                path = (*top[1], top[3])
            else:
                path = (*top[1], str(top[2]))
            stack.append([token, path, 0, None])
            expect_key = token == "{"
        elif token in ("}", "]"):
            stack.pop()
            expect_key = False
        elif token == ",":
            if top is not None and top[0] == "[":
                top[2] += 1
            else:
                expect_key = True
        elif token == ":":
            expect_key = False
        elif expect_key and top is not None and top[0] == "{":
            key = json.loads(token)
            top[3] = key
            here = (*top[1], key)
            if here in lines:
                duplicates.append((here, lines[here], line))
            else:
                lines[here] = line
            expect_key = False
    return lines, duplicates


# -- kinds ------------------------------------------------------------------------------------
_DS_KEYS = ("zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size", "zero_allow_untested_optimizer",
            "steps_per_print", "wall_clock_breakdown", "gradient_clipping")
_ACCELERATE_KEYS = ("compute_environment", "distributed_type", "num_machines", "machine_rank", "main_training_function",
                    "deepspeed_config", "fsdp_config", "rdzv_backend", "same_network")
_LLAMAFACTORY_KEYS = ("finetuning_type", "cutoff_len", "template", "stage", "lora_rank", "val_size", "pure_bf16",
                      "quantization_bit", "lora_target")
_AXOLOTL_KEYS = ("base_model", "micro_batch_size", "sequence_len", "num_epochs", "adapter", "val_set_size",
                 "lora_r", "datasets", "sample_packing", "lora_target_modules", "load_in_4bit")
_HF_KEYS = ("per_device_train_batch_size", "output_dir", "learning_rate", "num_train_epochs", "eval_strategy",
            "evaluation_strategy", "save_strategy", "gradient_accumulation_steps", "lr_scheduler_type", "max_steps")


def detect_kind(data: dict[str, Any]) -> str | None:
    """The kind of a config from its keys; None when it looks like none of them."""
    def score(keys: tuple[str, ...]) -> int:
        return sum(1 for k in keys if k in data)

    if isinstance(data.get("fp16"), dict) or isinstance(data.get("bf16"), dict) or score(_DS_KEYS) >= 1 and (
        "zero_optimization" in data or "train_micro_batch_size_per_gpu" in data or "train_batch_size" in data
    ):
        return "deepspeed"
    if "per_device_train_batch_size" not in data and (
            score(_ACCELERATE_KEYS) >= 2 or ("distributed_type" in data and "num_processes" in data)):
        return "accelerate"  # a TrainingArguments dump also has fsdp_config, but never compute_environment
    llama, axolotl = score(_LLAMAFACTORY_KEYS), score(_AXOLOTL_KEYS)
    if llama and llama >= axolotl and ("finetuning_type" in data or "cutoff_len" in data or "template" in data
                                       or "stage" in data):
        return "llamafactory"
    if axolotl and ("base_model" in data or "micro_batch_size" in data or "sequence_len" in data):
        return "axolotl"
    if score(_HF_KEYS) >= 1:
        return "hf"
    return None


def _read_text(path: Path, source: str) -> str:
    try:
        if path.is_dir():
            raise InputError("is a directory, expected a config file", source=source)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"{size} bytes: too large for a config file", source=source)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=source, line=line) from None
    if "\x00" in text:
        raise InputError("binary data (a NUL byte), not a config file", source=source, line=text[: text.index("\x00")].count("\n") + 1)
    return text


def read_config(path: Path, *, kind: str | None = None) -> ConfigFile:
    """Read one config; ``InputError`` (file, line, what) when it cannot be read or classified."""
    source = str(path)
    text = _read_text(path, source)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError.from_json(exc, source) from None
        except RecursionError:
            raise InputError("JSON nested too deeply", source=source) from None
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object, got {type(data).__name__}", source=source)
        lines, duplicates = _json_lines(text)
    else:
        doc = parse_yaml(text, source)
        if doc.data is None:
            raise InputError("empty config", source=source)
        if not isinstance(doc.data, dict):
            raise InputError(f"expected a mapping of settings at the top level, got a {type(doc.data).__name__}",
                             source=source)
        data, lines, duplicates = doc.data, doc.lines, doc.duplicates
    found = kind or detect_kind(data)
    if found is None:
        raise InputError(
            "cannot tell what kind of training config this is (expected HF TrainingArguments, LLaMA-Factory, "
            "Axolotl, DeepSpeed or Accelerate keys)", source=source)
    return ConfigFile(path, found, data, lines, duplicates)


# -- the model's own config.json ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    path: Path
    torch_dtype: str | None
    max_position_embeddings: int | None
    params: int | None  # an estimate from the architecture's sizes, None when they are missing


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def estimate_params(cfg: dict[str, Any]) -> int | None:
    """Decoder-only transformer parameters from config.json sizes: embeddings (untied head counted
    twice), per layer attention (with grouped KV heads) and a gated MLP (3 matrices) when the config
    names ``intermediate_size``. Rough (±10%: biases and norms are ignored); used only for memory."""
    hidden = _int(cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model"))
    layers = _int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers"))
    vocab = _int(cfg.get("vocab_size"))
    if not (hidden and layers and vocab):
        return None
    heads = _int(cfg.get("num_attention_heads")) or 1
    kv_heads = _int(cfg.get("num_key_value_heads")) or heads
    head_dim = _int(cfg.get("head_dim")) or hidden // heads
    inter = _int(cfg.get("intermediate_size") or cfg.get("n_inner")) or 4 * hidden
    gated = "intermediate_size" in cfg
    attention = hidden * head_dim * heads * 2 + hidden * head_dim * kv_heads * 2
    mlp = (3 if gated else 2) * hidden * inter
    experts = _int(cfg.get("num_local_experts") or cfg.get("num_experts")) or 1
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return embeddings + layers * (attention + mlp * experts)


def read_model_config(folder: Path) -> ModelConfig | None:
    """``config.json`` of a local model folder; None when the model is a hub id (no local folder)."""
    candidate = folder / "config.json"
    if not candidate.is_file():
        return None
    source = str(candidate)
    try:
        cfg = json.loads(_read_text(candidate, source))
    except json.JSONDecodeError as exc:
        raise InputError.from_json(exc, source) from None
    if not isinstance(cfg, dict):
        raise InputError("expected a JSON object", source=source)
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or text_cfg.get("torch_dtype")
    positions = (_int(text_cfg.get("max_position_embeddings")) or _int(text_cfg.get("n_positions"))
                 or _int(text_cfg.get("max_sequence_length")))
    return ModelConfig(candidate, str(dtype) if dtype else None, positions, estimate_params(text_cfg))
