"""Settings a framework refuses together: Axolotl's config validation raises on pairs of keys that
each make sense alone (two ways to say the batch, the warmup, the save or eval interval, the eval
split or the distributed backend)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from preflight.findings import fail, passed
from preflight.trainconfig.job import Job
from preflight.trainconfig.readers import ConfigFile
from preflight.trainconfig.rule import Located, rule, truthy

ATTENTION = ("xformers_attention", "sdp_attention", "s2_attention", "flash_attention", "flex_attention")


def _not_steps(value: Any) -> bool:
    return truthy(value) and str(value).strip().lower() != "steps"


@dataclass(frozen=True)
class Pair:
    """``first`` and ``second`` together make Axolotl raise ``error``; ``when`` (default: both
    truthy, as Axolotl's ``data.get``) decides; ``fix`` says what to change."""

    first: str
    second: str
    error: str
    fix: str
    when: Callable[[Any, Any], bool] | None = None

    def clashes(self, f: ConfigFile) -> bool:
        a, b = f.get(self.first), f.get(self.second)
        return self.when(a, b) if self.when else truthy(a) and truthy(b)


# axolotl-ai-cloud/axolotl src/axolotl/utils/schemas/validation.py (commit 6e30f2a3: TrainingValidationMixin
# check_gas_bsz, check_warmup, check_saves, check_evals; DatasetValidationMixin check_val_w_test_datasets;
# SystemValidationMixin check_fsdp_deepspeed; RLValidationMixin check_sample_packing_w_rl), the same checks in
# the older src/axolotl/utils/schemas/config.py (commit 70be5461).
AXOLOTL_PAIRS = (
    Pair("gradient_accumulation_steps", "batch_size", "please set only one of gradient_accumulation_steps or batch_size",
         "remove batch_size (the batch is micro_batch_size × gradient_accumulation_steps × GPUs)"),
    Pair("warmup_steps", "warmup_ratio", "warmup_steps and warmup_ratio are mutually exclusive",
         "keep one of warmup_steps and warmup_ratio"),
    Pair("saves_per_epoch", "save_steps",
         "save_steps and saves_per_epoch are mutually exclusive and cannot be used together.",
         "keep one of saves_per_epoch and save_steps"),
    Pair("save_strategy", "save_steps", "save_strategy and save_steps mismatch. Please set save_strategy to 'steps' "
         "or remove save_steps.", "set save_strategy: steps, or remove save_steps",
         lambda strategy, steps: _not_steps(strategy) and truthy(steps)),
    Pair("evals_per_epoch", "eval_steps",
         "eval_steps and evals_per_epoch are mutually exclusive and cannot be used together.",
         "keep one of evals_per_epoch and eval_steps"),
    Pair("eval_strategy", "eval_steps", "eval_strategy and eval_steps mismatch. Please set eval_strategy to 'steps' "
         "or remove eval_steps.", "set eval_strategy: steps, or remove eval_steps",
         lambda strategy, steps: _not_steps(strategy) and truthy(steps)),
    Pair("evals_per_epoch", "eval_strategy",
         "eval_strategy must be empty or set to `steps` when used with evals_per_epoch.",
         "remove eval_strategy (evals_per_epoch sets the interval)",
         lambda per_epoch, strategy: truthy(per_epoch) and _not_steps(strategy)),
    Pair("val_set_size", "test_datasets",
         "non-zero val_set_size should not be used with test_datasets configuration",
         "set val_set_size: 0 (test_datasets is the eval set)"),
    Pair("deepspeed", "fsdp", "deepspeed and fsdp cannot be used together.",
         "keep one of deepspeed and fsdp (and its fsdp_config)"),
    Pair("rl", "sample_packing", "`sample_packing: true` does not work with RLHF training",
         "set sample_packing: false for preference training"),
)


@rule("config.exclusive_settings", "No settings the framework refuses together")
def exclusive_settings(job: Job) -> Iterator[Located]:
    """Axolotl validates its config when it loads it (pydantic validators) and raises ValueError on
    keys set together that exclude each other: ``gradient_accumulation_steps`` with ``batch_size``,
    ``warmup_steps`` with ``warmup_ratio``, ``saves_per_epoch`` with ``save_steps``,
    ``evals_per_epoch`` with ``eval_steps``, a ``save_strategy``/``eval_strategy`` other than
    ``steps`` with ``save_steps``/``eval_steps`` (or ``evals_per_epoch``), a non-zero
    ``val_set_size`` with ``test_datasets``, ``deepspeed`` with ``fsdp``, ``sample_packing`` with
    ``rl``, and more than one attention backend ("Only one of xformers_attention, sdp_attention,
    s2_attention, flash_attention, flex_attention must be set", ``AttentionValidationMixin
    check_attention_fields``). Source: axolotl-ai-cloud/axolotl
    ``src/axolotl/utils/schemas/validation.py`` (commit 6e30f2a3), the same checks in
    ``schemas/config.py`` before the validators moved (commit 70be5461). Each pair fails at the
    line of the key written last."""
    for t in job.of_kind("axolotl"):
        found = 0
        for pair in AXOLOTL_PAIRS:
            if not pair.clashes(t):
                continue
            found += 1
            first_line, second_line = t.line(pair.first) or 0, t.line(pair.second) or 0
            later = pair.second if second_line >= first_line else pair.first
            yield Located(t.at(later), fail(
                f"{pair.first} = {t.get(pair.first)!r} ({t.at(pair.first)}) with {pair.second} = "
                f"{t.get(pair.second)!r} ({t.at(pair.second)}): Axolotl raises \"{pair.error}\"",
                "one of the two", pair.fix))
        backends = [k for k in ATTENTION if truthy(t.get(k))]
        if len(backends) > 1:
            found += 1
            yield Located(t.at(backends[-1]), fail(
                f"{len(backends)} attention backends on ({', '.join(f'{k} at {t.at(k)}' for k in backends)}): "
                f"Axolotl raises \"Only one of {', '.join(ATTENTION)} must be set\"", "one attention backend",
                f"keep {backends[0]} and remove " + ", ".join(backends[1:])))
        if not found:
            yield Located(str(t.path), passed("no settings Axolotl refuses together"))
