"""The training job as its config files describe it: settings located at ``file:line``, the
hardware it will run on, and the data-parallel world size.

The same concept has different keys in different frameworks (``per_device_train_batch_size`` in
HF and LLaMA-Factory, ``micro_batch_size`` in Axolotl); ``Job.setting`` hides that, so each rule
is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.compat import Matrix
from preflight.trainconfig.readers import TRAINER_KINDS, ConfigFile, KeyPath, ModelConfig

# concept -> kind -> keys, first present wins
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "micro_batch": {"hf": ("per_device_train_batch_size",), "llamafactory": ("per_device_train_batch_size",),
                    "axolotl": ("micro_batch_size",)},
    "grad_accum": {k: ("gradient_accumulation_steps",) for k in TRAINER_KINDS},
    "learning_rate": {k: ("learning_rate",) for k in TRAINER_KINDS},
    "epochs": {"hf": ("num_train_epochs",), "llamafactory": ("num_train_epochs",), "axolotl": ("num_epochs",)},
    "max_steps": {k: ("max_steps",) for k in TRAINER_KINDS},
    "warmup_steps": {k: ("warmup_steps",) for k in TRAINER_KINDS},
    "warmup_ratio": {k: ("warmup_ratio",) for k in TRAINER_KINDS},
    "scheduler": {"hf": ("lr_scheduler_type",), "llamafactory": ("lr_scheduler_type",), "axolotl": ("lr_scheduler",)},
    "bf16": {k: ("bf16",) for k in TRAINER_KINDS},
    "pure_bf16": {"llamafactory": ("pure_bf16",), "axolotl": ("bfloat16",)},  # bf16 weights, no AMP
    "fp16": {k: ("fp16",) for k in TRAINER_KINDS},
    "tf32": {k: ("tf32",) for k in TRAINER_KINDS},
    "eval_strategy": {"hf": ("eval_strategy", "evaluation_strategy"),
                      "llamafactory": ("eval_strategy", "evaluation_strategy"), "axolotl": ("eval_strategy",)},
    "eval_steps": {k: ("eval_steps",) for k in TRAINER_KINDS},
    "save_strategy": {k: ("save_strategy",) for k in TRAINER_KINDS},
    "save_steps": {k: ("save_steps",) for k in TRAINER_KINDS},
    "logging_steps": {k: ("logging_steps",) for k in TRAINER_KINDS},
    "load_best": {k: ("load_best_model_at_end",) for k in TRAINER_KINDS},
    "seq_len": {"hf": ("max_seq_length", "max_length"), "llamafactory": ("cutoff_len",),
                "axolotl": ("sequence_len",)},
    "model": {"hf": ("model_name_or_path",), "llamafactory": ("model_name_or_path",), "axolotl": ("base_model",)},
    "deepspeed": {k: ("deepspeed",) for k in TRAINER_KINDS},
    "max_samples": {"llamafactory": ("max_samples",)},
    "lora_rank": {"llamafactory": ("lora_rank",), "axolotl": ("lora_r",)},
    "lora_alpha": {"llamafactory": ("lora_alpha",), "axolotl": ("lora_alpha",)},
    "use_rslora": {"llamafactory": ("use_rslora",), "axolotl": ("peft_use_rslora",)},
}


@dataclass(frozen=True)
class Setting:
    """One value and where it is written."""

    value: Any
    file: ConfigFile
    keys: KeyPath

    @property
    def where(self) -> str:
        return self.file.at(*self.keys)

    @property
    def name(self) -> str:
        return ".".join(self.keys)


@dataclass(frozen=True)
class Hardware:
    """What the job runs on, and where that was learned (``--facts x.json``, ``--gpu``, this machine)."""

    gpu: str | None = None
    compute_capability: str | None = None
    gpus_per_node: int | None = None
    host_ram_bytes: int | None = None
    transformers: str | None = None
    source: str = "unknown"


@dataclass
class Job:
    files: list[ConfigFile]
    hardware: Hardware
    matrix: Matrix
    nnodes: int | None = None
    gpus_per_node: int | None = None
    train_samples: int | None = None
    params: int | None = None
    method_flag: str | None = None
    model: ModelConfig | None = None
    missing: list[tuple[Setting, str]] = field(default_factory=list)  # (setting naming a file, why unusable)

    # -- files --------------------------------------------------------------------------------
    def of_kind(self, *kinds: str) -> list[ConfigFile]:
        return [f for f in self.files if f.kind in kinds]

    @property
    def trainer(self) -> ConfigFile | None:
        found = self.of_kind(*TRAINER_KINDS)
        return found[0] if found else None

    @property
    def accelerate(self) -> ConfigFile | None:
        found = self.of_kind("accelerate")
        return found[0] if found else None

    @property
    def deepspeed(self) -> list[ConfigFile]:
        return self.of_kind("deepspeed")

    # -- settings -----------------------------------------------------------------------------
    def setting(self, concept: str, file: ConfigFile | None = None) -> Setting | None:
        """The trainer config's value for a concept (``None`` when not written, or written null)."""
        target = file or self.trainer
        if target is None:
            return None
        for key in ALIASES[concept].get(target.kind, ()):
            value = target.get(key)
            if value is not None:
                return Setting(value, target, (key,))
        return None

    def at(self, file: ConfigFile, *keys: str) -> Setting | None:
        value = file.get(*keys)
        return None if value is None else Setting(value, file, keys)

    # -- derived ------------------------------------------------------------------------------
    def world_size(self) -> tuple[int, str] | None:
        """The data-parallel world size and how it was learned, or None when nothing says."""
        if self.nnodes and self.gpus_per_node:
            return self.nnodes * self.gpus_per_node, f"--nnodes {self.nnodes} × --gpus {self.gpus_per_node}"
        acc = self.accelerate
        if acc is not None:
            n = acc.get("num_processes")
            if _positive_int(n):
                return int(n), f"num_processes at {acc.at('num_processes')}"
        per_node = self.gpus_per_node or self.hardware.gpus_per_node
        if per_node:
            nodes = self.nnodes
            how = f"--nnodes {nodes}" if nodes else None
            if nodes is None and acc is not None and _positive_int(acc.get("num_machines")):
                nodes, how = int(acc.get("num_machines")), f"num_machines at {acc.at('num_machines')}"
            nodes = nodes or 1
            source = "--gpus" if self.gpus_per_node else f"{self.hardware.source}"
            text = f"{per_node} GPU(s) per node from {source}" + (f" × {nodes} nodes ({how})" if how else "")
            return per_node * nodes, text
        return None

    def method(self) -> tuple[str, str] | None:
        """(full | lora | qlora | freeze, where it is said), None when the configs do not say."""
        if self.method_flag:
            return self.method_flag, "--method"
        t = self.trainer
        if t is None:
            return None
        if t.kind == "llamafactory":
            ftype = str(t.get("finetuning_type") or "lora").lower()  # LLaMA-Factory's default is lora
            where = t.at("finetuning_type") if t.has("finetuning_type") else f"{t.path} (finetuning_type default lora)"
            if ftype == "lora" and t.get("quantization_bit") in (4, 8, "4", "8"):
                return "qlora", t.at("quantization_bit")
            return ftype, where
        if t.kind == "axolotl":
            adapter = str(t.get("adapter") or "").lower()
            if adapter in ("lora", "qlora"):
                if adapter == "lora" and t.get("load_in_4bit") is True:
                    return "qlora", t.at("load_in_4bit")
                return adapter, t.at("adapter")
            return "full", f"{t.path} (no adapter: full fine-tuning)"
        return None


    def evaluates_only(self) -> str | None:
        """Where a LLaMA-Factory config asks only to evaluate or predict (``do_eval``/``do_predict``
        without ``do_train``, which defaults to false there: nothing is trained), else None."""
        t = self.trainer
        if t is None or t.kind != "llamafactory" or t.get("do_train") in (True, "true", "True"):
            return None
        for key in ("do_predict", "do_eval"):
            if t.get(key) in (True, "true", "True"):
                return t.at(key)
        return None

    def objective(self) -> tuple[str, str] | None:
        """(the training objective, where it is said) when it is not supervised fine-tuning or
        pre-training: LLaMA-Factory ``stage`` rm/ppo/dpo/kto, Axolotl ``rl`` or ``reward_model``."""
        t = self.trainer
        if t is None:
            return None
        if t.kind == "llamafactory":
            stage = str(t.get("stage") or "sft").strip().lower()
            return None if stage in ("sft", "pt") else (stage, t.at("stage"))
        if t.kind == "axolotl":
            rl = t.get("rl")
            if rl not in (None, False, "") and str(rl).lower() not in ("false", "none"):
                return str(rl).lower(), t.at("rl")
            if t.get("reward_model") is True or t.get("process_reward_model") is True:
                key = "reward_model" if t.get("reward_model") is True else "process_reward_model"
                return "reward model", t.at(key)
        return None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def resolve_relative(value: str, config: Path) -> Path | None:
    """A path written in a config: relative to the working directory, as the trainers open it
    (LLaMA-Factory passes ``deepspeed:`` and ``model_name_or_path`` unchanged to transformers, which
    checks ``os.path.exists`` from where the job starts: hparams/parser.py ``read_args``, accelerate
    ``HfDeepSpeedConfig``); else relative to the config's folder, for a check run from elsewhere."""
    try:
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return candidate if candidate.exists() else None
        if candidate.exists():
            return candidate
        return config.parent / candidate if (config.parent / candidate).exists() else None
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, an unknown ~user
        return None
