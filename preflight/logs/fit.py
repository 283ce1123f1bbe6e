"""Fit: overfitting (eval loss rising while train loss falls), underfitting (train loss flat and
high; preference runs by their reward accuracies and margins), suspiciously fast convergence."""

from __future__ import annotations

import bisect
import math

from preflight.findings import passed, skip, warn
from preflight.logs.context import (
    Context,
    Curve,
    Diagnosis,
    diagnosis,
    fmt,
    median,
    num,
    sampled_median,
    value_at,
)


def _train_near(c: Context, step: int, half_gap: float) -> float | None:
    """Median of the train loss over (step - half_gap, step]; the last point before where none."""
    tr = c.train
    if tr is None or not tr.values:
        return None
    hi = bisect.bisect_right(tr.steps, step)
    lo = bisect.bisect_left(tr.steps, step - half_gap)
    if hi > lo:
        return sampled_median(tr.values[lo:hi])
    return tr.values[hi - 1] if hi > 0 else None


def overfitting(c: Context) -> Diagnosis:
    id_ = "logs.overfitting"
    t, ev = c.t, c.eval
    if ev is None or not ev.values:
        return diagnosis(id_, skip("no eval_loss series: overfitting cannot be seen (see logs.no_eval)"))
    k = t.overfit_evals
    if len(ev) < k + 1:
        return diagnosis(id_, skip(f"only {len(ev)} evaluations; {k + 1} needed to see {k} consecutive rises"))
    steps, vals = ev.steps, ev.values
    every = max(1, len(steps) // 1000)
    gaps = [steps[i + 1] - steps[i] for i in range(0, len(steps) - 1, every)]
    half_gap = median(gaps) / 2  # train loss is compared over the half-interval before an eval
    best_i = vals.index(min(vals))
    expected = (f"eval loss not rising for {k} consecutive evaluations (by >= {t.overfit_min_rise:.0%} "
                "in total) while the train loss falls")
    found = None
    run = 0
    for j in range(1, len(vals)):
        run = run + 1 if vals[j] > vals[j - 1] else 0
        if run < k:
            continue
        onset = j - run
        if vals[j] < vals[onset] * (1 + t.overfit_min_rise):
            continue
        tr_on, tr_now = _train_near(c, steps[onset], half_gap), _train_near(c, steps[j], half_gap)
        if tr_on is not None and tr_now is not None and not tr_now < tr_on:
            continue
        end = j
        while end + 1 < len(vals) and vals[end + 1] > vals[end]:
            end += 1
        found = (onset, end, tr_on, _train_near(c, steps[end], half_gap))
        break
    best = f"best eval_loss {fmt(vals[best_i])} at step {steps[best_i]}"
    if found is None:
        return diagnosis(id_, passed(f"{len(ev)} evaluations, {best}; no sustained rise", expected))
    onset, end, tr_on, tr_end = found
    epoch = value_at(c.epoch, steps[onset])
    train_note = (f"while train loss fell {fmt(tr_on)} -> {fmt(tr_end)}" if tr_on is not None
                  else "(no train_loss logged to compare)")
    observed = (f"eval_loss rose {fmt(vals[onset])} -> {fmt(vals[end])} over {end - onset} "
                f"consecutive evaluations, steps {steps[onset]}-{steps[end]}"
                + (f" (from epoch {fmt(epoch)})" if epoch is not None else "")
                + f", {train_note}; {best}")
    best_epoch = value_at(c.epoch, steps[best_i])
    epochs_hint = f"num_train_epochs={max(1, math.ceil(best_epoch))}" if best_epoch else "fewer epochs"
    remediation = (
        f"Keep the checkpoint from step {steps[best_i]}: load_best_model_at_end=True, "
        "metric_for_best_model=\"eval_loss\", greater_is_better=False (save_strategy equal to "
        "eval_strategy and save_steps a multiple of eval_steps); stop early with "
        f"EarlyStoppingCallback(early_stopping_patience={k}); train for less ({epochs_hint}); or "
        "regularise: more data, weight_decay=0.01, lora_dropout=0.05-0.1, a lower LoRA rank.")
    evidence = {
        "onset_step": steps[onset], "onset_eval_loss": num(vals[onset]),
        "rise_end_step": steps[end], "rise_end_eval_loss": num(vals[end]),
        "rising_steps": steps[onset : end + 1], "best_step": steps[best_i],
        "best_eval_loss": num(vals[best_i]), "train_loss_at_onset": num(tr_on),
        "train_loss_at_end": num(tr_end), "epoch_at_onset": num(epoch),
    }
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), tuple(steps[onset : end + 1]))


def underfitting(c: Context) -> Diagnosis:
    id_ = "logs.underfitting"
    if (missing := c.without_train(id_)) is not None:
        return missing
    t, tr = c.t, c.train
    progress, how = c.progress()
    if progress is not None and progress < t.min_progress:
        return diagnosis(id_, skip(f"the log covers only {progress:.0%} of the run ({how})"))
    diverged = [ep for ep in c.spikes if ep.recovered is False]
    if diverged:
        return diagnosis(id_, skip(f"the loss diverged at step {tr.steps[diverged[0].index]} (see "
                            "logs.loss_spike): fit not judged"))
    if c.pref_acc is not None or c.pref_margin is not None:
        return _preference_fit(c, progress)
    sub = tr.sub
    start = median(sub[: min(5, len(sub))])
    tail = max(1, len(sub) // 10)
    end = median(sub[-tail:])
    expected = f"train loss falling >= {t.underfit_min_drop:.0%} from its start"
    if start <= 0:
        return diagnosis(id_, skip(f"the train loss starts at {fmt(start)} (<= 0): relative drop undefined"))
    drop = (start - end) / start
    what = (f"train loss {fmt(start)} at the start -> {fmt(end)} at the end "
            f"(steps {tr.first_step}-{tr.last_step}), {drop:+.1%}")
    if drop >= t.underfit_min_drop or end <= t.fast_loss:
        return diagnosis(id_, passed(what, expected))
    observed = what + f": flat (< {t.underfit_min_drop:.0%} drop)"
    remediation = (
        "Raise the learning rate 2-5x (LoRA typically 1e-4 to 3e-4, full fine-tuning 1e-5 to 5e-5), "
        "train longer (num_train_epochs=3, or more max_steps), and give the adapter capacity: "
        "LoRA r=16-64, lora_alpha=2*r, target_modules=\"all-linear\" rather than q_proj/v_proj only. "
        "Check the model is training at all: trainable parameters > 0 (nothing frozen by "
        "mistake), labels not all -100, and the rate not stuck at 0.")
    evidence = {"start_loss": num(start), "end_loss": num(end), "relative_drop": num(drop),
                "first_step": tr.first_step, "last_step": tr.last_step, "progress": num(progress)}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), (tr.first_step, tr.last_step))


def _late_mean(curve: Curve) -> float:
    """Mean of the last quarter of the curve's points (at least 5)."""
    tail = curve.values[-max(5, len(curve) // 4):]
    return math.fsum(tail) / len(tail)


def _preference_fit(c: Context, progress: float | None) -> Diagnosis:
    """Underfitting of a preference run: judged by rewards/accuracies and rewards/margins (see
    ``Thresholds.pref_min_accuracy``), never by the loss drop."""
    id_ = "logs.underfitting"
    t, acc, margin = c.t, c.pref_acc, c.pref_margin
    acc_late = _late_mean(acc) if acc is not None else None
    margin_late = _late_mean(margin) if margin is not None else None
    parts = []
    if acc is not None and acc_late is not None:
        parts.append(f"rewards/accuracies {fmt(acc.values[0])} at step {acc.first_step} -> "
                     f"{fmt(acc_late)} over the last quarter (to step {acc.last_step})")
    if margin is not None and margin_late is not None:
        parts.append(f"rewards/margins {fmt(margin.values[0])} -> {fmt(margin_late)}")
    what = "preference run, judged by what it learned rather than the loss drop: " + "; ".join(parts)
    expected = (f"rewards/accuracies above {t.pref_min_accuracy:g} (0.5 is chance) and positive "
                "rewards/margins by the end")
    evidence = {"accuracy_late_mean": num(acc_late), "margin_late_mean": num(margin_late),
                "progress": num(progress)}
    swapped = margin_late is not None and margin_late < 0
    chance = acc_late is not None and acc_late < t.pref_min_accuracy
    if not swapped and not chance:
        return diagnosis(id_, passed(what, expected, **evidence))
    if swapped:
        observed = what + ": the rejected answers score higher than the chosen ones"
        remediation = (
            "Check the preference pairs: chosen and rejected swapped (the dataset's columns, or a "
            "LLaMA-Factory dataset_info.json ranking: true / chosen-rejected mapping), and that "
            "the chat template renders both the same way. Then the rate: DPO usually runs at "
            "5e-7 to 5e-6 (full) or 5e-6 to 5e-5 (LoRA) with beta=0.1.")
    else:
        observed = what + ": the model prefers the chosen answer no more often than chance"
        remediation = (
            "The run has not learned the preferences: raise the learning rate (DPO 5e-7 to 5e-6 "
            "full, 5e-6 to 5e-5 LoRA) or beta (0.1 is TRL's default; 0.01 learns slowly), train "
            "longer, and check the pairs differ (identical chosen/rejected texts, or both "
            "truncated to the same prompt by max_length/max_prompt_length, give no signal).")
    steps = (acc or margin).first_step, (acc or margin).last_step  # type: ignore[union-attr]
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), steps)


def fast_convergence(c: Context) -> Diagnosis:
    id_ = "logs.fast_convergence"
    if (missing := c.without_train(id_)) is not None:
        return missing
    t, tr = c.t, c.train
    early_end = tr.first_step + t.fast_frac * (tr.last_step - tr.first_step)
    basis = f"the first {t.fast_frac:.0%} of steps"
    ep = c.epoch
    if ep is not None and ep.values and ep.values[-1] >= 2:
        i = bisect.bisect_left(ep.values, 1.0)  # epochs ascend
        if i < len(ep) and ep.steps[i] > early_end:
            early_end, basis = ep.steps[i], "the first epoch"
    # first point (of the downsampled curve) where a 5-point running median is under fast_loss;
    # the window holds at least 3 points (one low point at the very start is not a trend)
    sub, idx = tr.sub, tr.sub_index
    hit = None
    for g in range(2, len(sub)):
        if tr.steps[idx[g]] > early_end:
            break
        if sub[g] < t.fast_loss and median(sub[max(0, g - 4) : g + 1]) < t.fast_loss:
            hit = g
            break
    expected = f"train loss above {t.fast_loss} through {basis} (step {int(early_end)})"
    if hit is None:
        lowest = min(tr.values[: max(1, bisect.bisect_right(tr.steps, early_end))])
        return diagnosis(id_, passed(f"train loss {fmt(lowest)} at its lowest through {basis}", expected))
    step = tr.steps[idx[hit]]
    frac = (step - tr.first_step) / max(1, tr.last_step - tr.first_step)
    ev_at = value_at(c.eval, step)
    observed = (f"train loss below {t.fast_loss} by step {step} ({frac:.0%} of the run, within "
                f"{basis}): {fmt(sub[hit])}" + (f"; eval_loss {fmt(ev_at)} there" if ev_at is not None else ""))
    remediation = (
        "A loss near zero this early usually means the model sees the answers: duplicated "
        "samples, or evaluation rows that are also in the training set. Run `preflight data` on "
        "the train and eval files to find duplicates and train/eval overlap; check the labels "
        "don't leak into the inputs (answer in the prompt), that prompt/padding tokens are masked "
        "(labels=-100) so the loss isn't dominated by trivial tokens, and that the data isn't one "
        "template repeated.")
    evidence = {"step": step, "train_loss": num(sub[hit]), "fraction_of_run": num(frac),
                "early_end_step": int(early_end), "eval_loss": num(ev_at)}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), (step,))
