"""Evaluation: an eval split when training for several epochs, evaluation that has data, and the
save/eval agreement that ``load_best_model_at_end`` needs."""

from __future__ import annotations

from collections.abc import Iterator

from preflight.findings import fail, passed, warn
from preflight.trainconfig.job import Job, Setting
from preflight.trainconfig.rule import Located, as_bool, as_number, fmt, rule

HF_DEFAULT_EPOCHS = 3.0  # TrainingArguments.num_train_epochs
AXOLOTL_DEFAULT_EPOCHS = 1.0
HF_DEFAULT_STEPS = 500  # save_steps and logging_steps defaults (transformers training_args.py)


def strategy(s: Setting | None, default: str) -> str:
    """``"steps"`` from ``steps``, ``IntervalStrategy.STEPS`` or a missing key's default."""
    if s is None:
        return default
    return str(s.value).strip().lower().rsplit(".", 1)[-1]


def eval_data(job: Job) -> tuple[bool, str]:
    """(the config gives evaluation data, what says so)."""
    t = job.trainer
    if t is None:
        return False, ""
    if t.kind == "llamafactory":
        if (as_number(t.get("val_size")) or 0) > 0:
            return True, f"val_size at {t.at('val_size')}"
        if t.get("eval_dataset"):
            return True, f"eval_dataset at {t.at('eval_dataset')}"
        return False, "val_size is 0 and no eval_dataset"
    if t.kind == "axolotl":
        if (as_number(t.get("val_set_size")) or 0) > 0:
            return True, f"val_set_size at {t.at('val_set_size')}"
        if t.get("test_datasets"):
            return True, f"test_datasets at {t.at('test_datasets')}"
        return False, "val_set_size is 0 and no test_datasets"
    return True, "the training script passes the eval dataset"


def evaluates(job: Job) -> tuple[bool, str]:
    """(evaluation runs during training, what says so)."""
    t = job.trainer
    if t is None:
        return False, ""
    ev = job.setting("eval_strategy")
    if t.kind == "axolotl":
        has_data, why = eval_data(job)
        if ev is not None and strategy(ev, "no") == "no":
            return False, f"{ev.name} = no at {ev.where}"
        return has_data, why
    if strategy(ev, "no") == "no":
        return False, f"{ev.name} = {ev.value} at {ev.where}" if ev else "eval_strategy not set (default no)"
    if t.kind == "llamafactory":
        has_data, why = eval_data(job)
        return has_data, why
    return True, f"{ev.name} = {ev.value} at {ev.where}"  # type: ignore[union-attr]


@rule("config.no_eval", "Evaluation when training for several epochs")
def no_eval(job: Job) -> Iterator[Located]:
    """More than one epoch with no evaluation during training and no early stopping: nothing shows
    when the model starts to overfit, and the last checkpoint is kept whatever it is worth
    (heuristic; data_config_ux_anchors §2.6; LLaMA-Factory's ``val_size`` defaults to 0)."""
    t = job.trainer
    if t is None or job.evaluates_only():
        return
    if (as_number(t.get("max_steps")) or 0) > 0:
        return
    epochs_s = job.setting("epochs")
    epochs = as_number(epochs_s.value) if epochs_s else (AXOLOTL_DEFAULT_EPOCHS if t.kind == "axolotl" else HF_DEFAULT_EPOCHS)
    where = epochs_s.where if epochs_s else f"{t.path} (num_train_epochs default {fmt(HF_DEFAULT_EPOCHS)})"
    if epochs is None or epochs <= 1:
        return
    runs, why = evaluates(job)
    if runs:
        yield Located(where, passed(f"{fmt(epochs)} epochs, evaluated ({why})"))
        return
    if t.kind == "axolotl" and t.get("early_stopping_patience"):
        yield Located(where, passed(f"early_stopping_patience at {t.at('early_stopping_patience')}"))
        return
    fix = {"llamafactory": "set val_size: 0.05, eval_strategy: steps and eval_steps: 100",
           "axolotl": "set val_set_size: 0.05 (and early_stopping_patience: 3)",
           "hf": "set eval_strategy: steps and eval_steps, pass an eval_dataset (and add EarlyStoppingCallback)"}[t.kind]
    yield Located(where, warn(f"{fmt(epochs)} epochs with no evaluation ({why}) and no early stopping",
                              "an eval split for multi-epoch training", fix))


@rule("config.eval_without_data", "Evaluation has data to run on")
def eval_without_data(job: Job) -> Iterator[Located]:
    """Evaluation requested (an eval strategy, or ``do_eval``/``do_predict``) with no eval split:
    LLaMA-Factory raises "Please make sure eval_dataset be provided or val_size >1e-6"
    (hparams/parser.py; TrainingArguments turns ``do_eval`` on with any eval strategy), Axolotl "eval_steps and eval_strategy are
    not supported with val_set_size == 0" (utils/schemas/validation.py). ``predict_with_generate``
    needs an ``eval_dataset`` itself: "Cannot use `predict_with_generate` if `eval_dataset` is None."
    (LLaMA-Factory hparams/parser.py ``get_train_args``, commit 003a2acb)."""
    t = job.trainer
    if t is None or t.kind not in ("llamafactory", "axolotl"):
        return
    ev = job.setting("eval_strategy")
    steps = job.setting("eval_steps")
    asked = ev if ev is not None and strategy(ev, "no") != "no" else (steps if t.kind == "axolotl" else None)
    if asked is None and t.kind == "llamafactory":
        for key in ("do_eval", "do_predict", "predict_with_generate"):
            flag = job.at(t, key)
            if flag is not None and as_bool(flag.value):
                asked = flag
                break
    generate = job.at(t, "predict_with_generate") if t.kind == "llamafactory" else None
    if generate is not None and as_bool(generate.value) and not t.get("eval_dataset"):
        yield Located(generate.where, fail(
            "predict_with_generate with no eval_dataset: LLaMA-Factory raises \"Cannot use `predict_with_generate` "
            "if `eval_dataset` is None\" (a val_size split does not count)", "an eval_dataset",
            "set eval_dataset: (a dataset name from dataset_info.json)"))
        return
    if asked is None:
        return
    has_data, why = eval_data(job)
    if has_data:
        yield Located(asked.where, passed(f"{asked.name} with {why}"))
        return
    fix = "set val_size: 0.05 (or eval_dataset)" if t.kind == "llamafactory" else "set val_set_size: 0.05"
    yield Located(asked.where, fail(f"{asked.name} = {asked.value}, but {why}", "an eval split", fix))


@rule("config.best_model_strategy", "load_best_model_at_end with matching save and eval strategies")
def best_model_strategy(job: Job) -> Iterator[Located]:
    """``load_best_model_at_end`` needs the save and eval strategies to match (unless
    ``save_strategy: best``): TrainingArguments raises "--load_best_model_at_end requires the save
    and eval strategy to match" (transformers training_args.py ``_validate_args``). Defaults count:
    eval_strategy ``no``, save_strategy ``steps``. LLaMA-Factory's RM and PPO stages refuse it
    outright: "RM and PPO stages do not support `load_best_model_at_end`." (hparams/parser.py
    ``get_train_args``, commit 003a2acb)."""
    t = job.trainer
    lb = job.setting("load_best")
    if t is None or t.kind not in ("hf", "llamafactory") or lb is None or not as_bool(lb.value):
        return
    stage = str(t.get("stage") or "sft").strip().lower() if t.kind == "llamafactory" else None
    if stage in ("rm", "ppo"):
        yield Located(lb.where, fail(f"load_best_model_at_end with stage {stage}: LLaMA-Factory refuses it",
                                     "no best-model loading for RM/PPO", "set load_best_model_at_end: false"))
        return
    ev, sv = job.setting("eval_strategy"), job.setting("save_strategy")
    e, s = strategy(ev, "no"), strategy(sv, "steps")
    if s == "best" or e == s:
        yield Located(lb.where, passed(f"save_strategy {s}, eval_strategy {e}"))
        return
    where = (ev or sv or lb).where
    target = "steps" if e == "no" else e
    yield Located(where, fail(
        f"load_best_model_at_end with eval_strategy {e} ({ev.where if ev else 'default'}) and save_strategy {s} "
        f"({sv.where if sv else 'default'})", "the same strategy",
        f"set eval_strategy: {target} and save_strategy: {target}" if e == "no" else f"set save_strategy: {e}"))


@rule("config.save_eval_steps", "save_steps is a multiple of eval_steps")
def save_eval_steps(job: Job) -> Iterator[Located]:
    """With ``load_best_model_at_end`` and step strategies, ``save_steps`` must be a round multiple of
    ``eval_steps`` (which defaults to ``logging_steps``), and ratios (< 1) cannot be mixed with
    absolute steps: TrainingArguments raises "--load_best_model_at_end requires the saving steps to be
    a round multiple of the evaluation steps" (transformers training_args.py ``_validate_args``).
    Axolotl's ``early_stopping_patience`` needs both written and the multiple: see
    ``_axolotl_early_stopping``."""
    t = job.trainer
    if t is not None and t.kind == "axolotl":
        yield from _axolotl_early_stopping(job)
        return
    lb = job.setting("load_best")
    if t is None or t.kind not in ("hf", "llamafactory") or lb is None or not as_bool(lb.value):
        return
    ev, sv = job.setting("eval_strategy"), job.setting("save_strategy")
    if strategy(ev, "no") != "steps" or strategy(sv, "steps") != "steps":
        return
    es, ss, ls = job.setting("eval_steps"), job.setting("save_steps"), job.setting("logging_steps")
    eval_steps = as_number(es.value) if es else (as_number(ls.value) if ls else HF_DEFAULT_STEPS)
    save_steps = as_number(ss.value) if ss else HF_DEFAULT_STEPS
    if not eval_steps or not save_steps:
        return
    where = (ss or es or lb).where
    if (eval_steps < 1) != (save_steps < 1):
        yield Located(where, fail(
            f"save_steps {fmt(save_steps)} and eval_steps {fmt(eval_steps)} mix a ratio with absolute steps",
            "both ratios or both step counts", f"set save_steps: {fmt(eval_steps)}"))
        return
    big = 1_000_000
    if round(save_steps * big) % round(eval_steps * big):
        multiple = (int(save_steps // eval_steps) or 1) * eval_steps
        yield Located(where, fail(
            f"save_steps {fmt(save_steps)} is not a multiple of eval_steps {fmt(eval_steps)}"
            + ("" if es else " (eval_steps defaults to logging_steps)"),
            f"a multiple of {fmt(eval_steps)}", f"set save_steps: {fmt(multiple)}"))
        return
    yield Located(where, passed(f"save_steps {fmt(save_steps)} = {fmt(save_steps / eval_steps)} × eval_steps"))


def _axolotl_early_stopping(job: Job) -> Iterator[Located]:
    """Axolotl's ``early_stopping_patience`` needs ``save_steps`` and ``eval_steps`` written (not
    ``saves_per_epoch``/``evals_per_epoch``, which it turns into steps only later), with eval_steps
    dividing save_steps: "`early_stopping_patience` requires save_steps and eval_steps to be set.
    eval_steps should evenly divide save_steps." and "`early_stopping_patience` requires that
    eval_steps should evenly divide save_steps." (axolotl-ai-cloud/axolotl
    src/axolotl/utils/schemas/validation.py ``check_early_stopping``, commit 6e30f2a3)."""
    t = job.trainer
    assert t is not None
    patience = job.at(t, "early_stopping_patience")
    if patience is None or not as_number(patience.value):
        return
    es, ss = job.at(t, "eval_steps"), job.at(t, "save_steps")
    eval_steps = as_number(es.value) if es else None
    save_steps = as_number(ss.value) if ss else None
    if not eval_steps or not save_steps:
        missing = " and ".join(k for k, v in (("save_steps", save_steps), ("eval_steps", eval_steps)) if not v)
        per_epoch = [k for k in ("saves_per_epoch", "evals_per_epoch") if t.has(k)]
        instead = f" ({' and '.join(per_epoch)} {'do' if len(per_epoch) > 1 else 'does'} not count)" if per_epoch else ""
        yield Located(patience.where, fail(
            f"early_stopping_patience with no {missing}{instead}: Axolotl raises \"`early_stopping_patience` "
            "requires save_steps and eval_steps to be set\"", "save_steps and eval_steps",
            "set eval_steps: 100 and save_steps: 200 (and remove evals_per_epoch/saves_per_epoch)"))
        return
    big = 1_000_000
    if round(save_steps * big) % round(eval_steps * big):
        multiple = (int(save_steps // eval_steps) or 1) * eval_steps
        yield Located(ss.where, fail(  # type: ignore[union-attr]
            f"save_steps {fmt(save_steps)} is not a multiple of eval_steps {fmt(eval_steps)} with "
            f"early_stopping_patience at {patience.where}: Axolotl raises \"`early_stopping_patience` requires that "
            "eval_steps should evenly divide save_steps\"", f"a multiple of {fmt(eval_steps)}",
            f"set save_steps: {fmt(multiple)}"))
        return
    yield Located(patience.where, passed(
        f"early_stopping_patience with save_steps {fmt(save_steps)} = {fmt(save_steps / eval_steps)} × eval_steps"))
