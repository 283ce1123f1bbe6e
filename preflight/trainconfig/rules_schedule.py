"""Learning rate, warmup, scheduler and LoRA rank/alpha.

Ranges are heuristics, so they warn; their sources (data_config_ux_anchors.md §2.6):
- full fine-tuning 1e-5 to 2e-5: Stanford Alpaca README (2e-5), LLaMA-Factory
  ``examples/train_full/qwen3_full_sft.yaml`` (1e-5), TRL ``SFTConfig.learning_rate`` default 2e-5;
- LoRA 1e-4 to 2e-4: LLaMA-Factory ``examples/train_lora/qwen3_lora_sft.yaml`` (1e-4), Unsloth
  "LoRA Hyperparameters Guide" (2e-4 start), microsoft/LoRA GPT-2 recipe (2e-4);
- QLoRA 1e-4 to 2e-4: artidoro/qlora ``scripts/finetune_guanaco_*.sh``.
"""

from __future__ import annotations

from collections.abc import Iterator

from preflight.findings import fail, passed, skip, warn
from preflight.trainconfig.job import Job
from preflight.trainconfig.rule import Located, as_bool, as_number, fmt, is_auto, rule

FULL_HIGH = 1e-4  # above: divergence and forgetting risk for full fine-tuning
FULL_LORA_PASTE = 2e-4  # at or above: a LoRA rate pasted into a full fine-tuning config
ADAPTER_LOW, ADAPTER_HIGH = 1e-5, 5e-4
WARMUP_NEEDED_FROM = 1e-4
ALPHA_RATIO_LOW, ALPHA_RATIO_HIGH = 0.25, 8.0  # QLoRA r=64/alpha=16; microsoft/LoRA r=4/alpha=32
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
              "warmup_stable_decay")


def learning_rate(job: Job) -> tuple[float, str, str] | None:
    """(rate, where, key) from the trainer config, else from a DeepSpeed optimizer block."""
    s = job.setting("learning_rate")
    if s is not None and as_number(s.value) is not None:
        return as_number(s.value), s.where, s.name  # type: ignore[return-value]
    for ds in job.deepspeed:
        lr = ds.get("optimizer", "params", "lr")
        if as_number(lr) is not None:
            return as_number(lr), ds.at("optimizer", "params", "lr"), "optimizer.params.lr"  # type: ignore[return-value]
    t = job.trainer
    if t is not None and t.kind in ("hf", "llamafactory"):
        return 5e-5, f"{t.path} (learning_rate default 5e-5)", "learning_rate"
    return None


@rule("config.lr_vs_method", "Learning rate fits the fine-tuning method")
def lr_vs_method(job: Job) -> Iterator[Located]:
    """A learning rate outside the published range for the method: a LoRA rate (2e-4) pasted into
    full fine-tuning diverges or erases what the model knew; a full fine-tuning rate (2e-5) on LoRA
    barely moves the adapters. Heuristic: warns. Skipped for preference and reward training (DPO,
    KTO, PPO, RM), whose rates sit below the SFT ranges: LLaMA-Factory's own
    ``examples/train_lora/llama3_lora_dpo.yaml`` and ``llama3_lora_kto.yaml`` train LoRA at 5e-6."""
    lr = learning_rate(job)
    method = job.method()
    if lr is None or job.evaluates_only():
        return
    rate, where, key = lr
    if method is None:
        yield Located(where, skip(f"{key} = {fmt(rate)}; method unknown (give --method full|lora|qlora)"))
        return
    name, said = method
    objective = job.objective()
    if objective is not None:
        yield Located(where, skip(f"{key} = {fmt(rate)} for {objective[0].upper()} ({objective[1]}): the published "
                                  "ranges are for supervised fine-tuning"))
        return
    if name in ("full", "freeze"):
        if rate >= FULL_LORA_PASTE:
            yield Located(where, warn(f"{key} = {fmt(rate)} for {name} fine-tuning ({said}): a LoRA-sized rate",
                                      "1e-5 to 2e-5 for full fine-tuning", f"set {key}: 2.0e-5"))
            return
        if rate > FULL_HIGH:
            yield Located(where, warn(f"{key} = {fmt(rate)} for {name} fine-tuning ({said})",
                                      f"<= {fmt(FULL_HIGH)} (1e-5 to 2e-5 typical)", f"set {key}: 2.0e-5"))
            return
    elif name in ("lora", "qlora"):
        if rate > ADAPTER_HIGH or rate < ADAPTER_LOW:
            yield Located(where, warn(
                f"{key} = {fmt(rate)} for {name.upper()} ({said})",
                f"{fmt(ADAPTER_LOW)} to {fmt(ADAPTER_HIGH)} (1e-4 to 2e-4 typical)", f"set {key}: 1.0e-4"))
            return
    else:
        yield Located(where, skip(f"no published range for method {name!r}"))
        return
    yield Located(where, passed(f"{key} = {fmt(rate)} for {name}"))


def _warmup(job: Job) -> tuple[float, str] | None:
    """The configured warmup as (amount, description), or None when there is none."""
    for concept in ("warmup_steps", "warmup_ratio"):
        s = job.setting(concept)
        if s is not None and (as_number(s.value) or 0) > 0:
            return as_number(s.value), f"{s.name} at {s.where}"  # type: ignore[return-value]
    for ds in job.deepspeed:
        steps = ds.get("scheduler", "params", "warmup_num_steps")
        if is_auto(steps) or (as_number(steps) or 0) > 0:
            return (as_number(steps) or 0.0), f"scheduler.params.warmup_num_steps at {ds.at('scheduler', 'params', 'warmup_num_steps')}"
    return None


@rule("config.no_warmup", "Warmup before a high learning rate")
def no_warmup(job: Job) -> Iterator[Located]:
    """No warmup (0 steps and 0 ratio) with a learning rate of 1e-4 or more: the first updates,
    with Adam's second-moment estimate still near zero, are the largest of the run (heuristic;
    Alpaca and QLoRA use ratio 0.03, LLaMA-Factory examples 0.1)."""
    lr = learning_rate(job)
    if lr is None or job.evaluates_only():
        return
    rate, where, key = lr
    found = _warmup(job)
    if found is not None:
        yield Located(where, passed(f"warmup {fmt(found[0])} ({found[1]})"))
        return
    if rate >= WARMUP_NEEDED_FROM:
        t = job.trainer
        fix = "warmup_ratio: 0.03" if t is None or t.kind != "hf" else "warmup_ratio: 0.03 (transformers >= 5: warmup_steps: 0.03)"
        yield Located(where, warn(f"{key} = {fmt(rate)} with no warmup", "warmup (ratio 0.03 to 0.1)", f"set {fix}"))
        return
    yield Located(where, passed(f"{key} = {fmt(rate)}: low enough without warmup"))


@rule("config.scheduler", "Scheduler exists and can run")
def scheduler(job: Job) -> Iterator[Located]:
    """``lr_scheduler_type`` must name a transformers ``SchedulerType`` (an unknown name raises
    ValueError; transformers trainer_utils.py); ``reduce_lr_on_plateau`` without evaluation raises
    "lr_scheduler_type reduce_lr_on_plateau requires an eval strategy" (training_args.py
    ``_validate_args``). A ``scheduler`` block in the DeepSpeed config replaces the trainer's
    scheduler (transformers integrations/deepspeed.py ``deepspeed_optim_sched``): a warning when
    both are written."""
    t = job.trainer
    s = job.setting("scheduler")
    if t is None or s is None:
        return
    name = str(s.value).strip().lower().rsplit(".", 1)[-1]
    if t.kind in ("hf", "llamafactory"):
        if name not in SCHEDULERS:
            yield Located(s.where, fail(f"{s.name} = {s.value!r} is not a transformers scheduler",
                                        f"one of {', '.join(SCHEDULERS)}", f"set {s.name}: cosine"))
            return
        if name == "reduce_lr_on_plateau":
            ev = job.setting("eval_strategy")
            if ev is None or str(ev.value).lower() in ("no", "intervalstrategy.no"):
                yield Located(s.where, fail(f"{s.name} = reduce_lr_on_plateau with no evaluation",
                                            "an eval strategy", "set eval_strategy: steps (and an eval split), "
                                            "or lr_scheduler_type: cosine"))
                return
    for ds in job.deepspeed:
        if isinstance(ds.get("scheduler"), dict):
            yield Located(s.where, warn(
                f"{s.name} = {s.value}, but {ds.at('scheduler')} configures a DeepSpeed scheduler, which wins",
                "one scheduler", f"remove \"scheduler\" from {ds.path} (the trainer's {s.name} then applies)"))
            return
    yield Located(s.where, passed(f"{s.name} = {s.value}"))


@rule("config.lora_rank_alpha", "LoRA rank and alpha are sane")
def lora_rank_alpha(job: Job) -> Iterator[Located]:
    """A LoRA rank of 0 or less: PEFT raises "`r` should be a positive integer value" (peft
    tuners/lora/layer.py ``update_layer``), a failure. The update is scaled by alpha/r: published
    recipes range from alpha = r/4 (QLoRA, r=64, alpha=16) to alpha = 8r (microsoft/LoRA GPT-2,
    r=4, alpha=32), with alpha = 2r the common heuristic (Raschka, "Practical Tips for Finetuning
    LLMs Using LoRA"; LLaMA-Factory's default). Outside that band the adapter barely learns or
    blows up: a warning. Skipped with rsLoRA (alpha/sqrt(r) scaling)."""
    method = job.method()
    if method is None or method[0] not in ("lora", "qlora"):
        return
    t = job.trainer
    rank_s, alpha_s = job.setting("lora_rank"), job.setting("lora_alpha")
    if rank_s is None and t is not None and t.kind == "llamafactory":
        rank, rank_where, rank_key = 8, f"{t.path} (lora_rank default 8)", "lora_rank"
    elif rank_s is not None:
        rank, rank_where, rank_key = as_number(rank_s.value), rank_s.where, rank_s.name
    else:
        return
    if rank is None or rank <= 0 or rank != int(rank):
        yield Located(rank_where, fail(f"{rank_key} = {rank_s.value if rank_s else rank}", "a whole number > 0",
                                       f"set {rank_key}: 16"))
        return
    rank = int(rank)
    if alpha_s is None:
        if t is not None and t.kind == "llamafactory":
            yield Located(rank_where, passed(f"{rank_key} = {rank}, lora_alpha default 2 × rank = {2 * rank}"))
        return
    alpha = as_number(alpha_s.value)
    rs = job.setting("use_rslora")
    if rs is not None and as_bool(rs.value):
        yield Located(alpha_s.where, skip("rsLoRA scales by alpha/sqrt(r); no ratio check"))
        return
    if alpha is None or alpha <= 0:
        yield Located(alpha_s.where, warn(f"{alpha_s.name} = {alpha_s.value}", "alpha > 0", f"set {alpha_s.name}: {2 * rank}"))
        return
    ratio = alpha / rank
    if not ALPHA_RATIO_LOW <= ratio <= ALPHA_RATIO_HIGH:
        yield Located(alpha_s.where, warn(
            f"{alpha_s.name} = {fmt(alpha)} with rank {rank}: scale alpha/r = {fmt(ratio)}",
            f"alpha/r between {fmt(ALPHA_RATIO_LOW)} and {fmt(ALPHA_RATIO_HIGH)} (2 typical)",
            f"set {alpha_s.name}: {2 * rank}"))
        return
    yield Located(alpha_s.where, passed(f"rank {rank}, alpha {fmt(alpha)} (alpha/r {fmt(ratio)})"))

