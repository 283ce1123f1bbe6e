"""Helpers for the `preflight config` tests: run the CLI in-process and index its JSON findings.

The configs under ``tests/fixtures/configs`` are modelled on the frameworks' published examples:
- ``examples/train_lora/qwen3_lora_sft.yaml``, ``examples/train_full/qwen3_full_sft.yaml`` and
  ``examples/deepspeed/ds_z{2,3,3_offload}_config.json``: hiyouga/LLaMA-Factory ``examples/``
  (same paths); ``qwen3_lora_sft_eval.yaml`` is the LoRA example with its ``### eval`` block
  uncommented;
  ``examples/train_lora/llama3_lora_predict.yaml``: LLaMA-Factory's predict example as published;
- ``axolotl/lora-1b.yml``: axolotl-ai-cloud/axolotl ``examples/llama-3/lora-1b.yml``;
  ``axolotl/qlora.yml``: ``examples/llama-2/qlora.yml``;
- ``accelerate/*.yaml``: what ``accelerate config`` writes (multi-GPU, two machines; DeepSpeed
  ZeRO-2 plugin); ``accelerate/deepspeed_config_file.yaml``: the config ``accelerate config`` writes
  when given a DeepSpeed JSON (huggingface/accelerate ``docs/source/usage_guides/deepspeed.md``,
  "Scenario 2"), its path pointed at the LLaMA-Factory ZeRO-3 example beside it;
- ``hf/alpaca_train.json``: the Stanford Alpaca README training command as TrainingArguments JSON;
  ``hf/training_args.json``: a TrainingArguments dump with step evaluation and best-model loading;
  ``hf/training_args_dump_4.46.json``: what ``TrainingArguments.to_json_string()`` writes on
  transformers 4.46.3 (every init field at its default from that wheel's ``training_args.py``, with
  ``__post_init__``'s ``logging_dir``/``report_to``/``fsdp_config`` and the ``<..._TOKEN>`` masks),
  for a run with step evaluation, best-model loading and ``warmup_ratio: 0.03``;
- ``models/tinyllama/config.json``: TinyLlama/TinyLlama-1.1B-Chat-v1.0 ``config.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from preflight.cli import main

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
FACTS = Path(__file__).parent / "fixtures"


def run_config(capsys, *args: str | Path) -> tuple[int, dict[str, Any]]:  # noqa: ANN001 - pytest fixture
    """(exit code, JSON document) of ``preflight config ARGS --json``."""
    code = main(["config", *[str(a) for a in args], "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def by_id(doc: dict[str, Any], rule_id: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["id"] == rule_id]


def statuses(doc: dict[str, Any], rule_id: str) -> list[str]:
    return [f["status"] for f in by_id(doc, rule_id)]


def problems(doc: dict[str, Any]) -> dict[str, list[str]]:
    """rule id -> statuses of its warn/fail findings."""
    out: dict[str, list[str]] = {}
    for f in doc["findings"]:
        if f["status"] in ("warn", "fail"):
            out.setdefault(f["id"], []).append(f["status"])
    return out


def copy_config(tmp_path: Path, relative: str, name: str | None = None) -> Path:
    target = tmp_path / (name or Path(relative).name)
    shutil.copy(CONFIGS / relative, target)
    return target


def edit_yaml(path: Path, replace: dict[str, str | None] | None = None, append: str = "") -> Path:
    """Change top-level ``key: value`` lines (None deletes the line) and append text."""
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        key = line.split(":", 1)[0]
        if replace and key in replace and not line.startswith((" ", "#")):
            if replace[key] is not None:
                out.append(f"{key}: {replace[key]}")
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n" + append)
    return path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
