"""The learning-rate schedule: warmup before an early spike, a rate that never decays where a
decaying schedule was configured, a logged rate that disagrees with the config."""

from __future__ import annotations

import bisect

from preflight.findings import passed, skip, warn
from preflight.logs.context import Context, Diagnosis, cfg_value, diagnosis, fmt, num, scheduler_of
from preflight.logs.divergence import is_blip

# Schedules that bring the rate down over the run. warmup_stable_decay decays only in its last
# phase and reduce_lr_on_plateau only when the metric stalls: neither is judged.
DECAYING = {"linear", "cosine", "cosine_with_restarts", "polynomial", "inverse_sqrt",
            "cosine_with_min_lr", "cosine_warmup_with_min_lr"}
NON_DECAYING = {"constant", "constant_with_warmup"}


# ---------------------------------------------------------------------------------------------
# learning-rate schedule


def _configured_warmup(c: Context) -> float | None:
    """Configured warmup in steps-or-ratio terms: > 0 some, 0 none, None not said."""
    ws = cfg_value(c.configured, None, "warmup_steps")
    wr = cfg_value(c.configured, None, "warmup_ratio")
    if ws is None and wr is None:
        return None
    return max(ws or 0.0, wr or 0.0)


def no_warmup(c: Context) -> Diagnosis:
    id_ = "logs.no_warmup"
    t, tr, lr = c.t, c.train, c.lr
    cfg_warmup = _configured_warmup(c)
    if lr is not None and lr.values:
        peak = c.lr_peak
        first = lr.values[0]
        if peak <= 0:
            return diagnosis(id_, skip("the logged learning rate is never above 0"))
        at_peak = first >= t.warmup_peak_frac * peak
        how = (f"first logged learning rate {fmt(first)} at step {lr.first_step} is "
               f"{first / peak:.0%} of the peak {fmt(peak)}")
    elif cfg_warmup:
        return diagnosis(id_, skip(f"no learning_rate series logged; the config sets warmup {fmt(cfg_warmup)}"))
    elif cfg_warmup is not None:
        at_peak = True
        peak = first = None
        how = "no learning_rate logged; the config sets no warmup"
    else:
        return diagnosis(id_, skip("no learning_rate series logged and no configured warmup"))
    expected = (f"a warmup ramp (first logged rate < {t.warmup_peak_frac:.0%} of the peak), or a "
                "stable loss over the first steps")
    if not at_peak:
        return diagnosis(id_, passed(how + " (warmup ramp)", expected))
    if tr is None or not tr.values:
        return diagnosis(id_, skip(how + "; no train_loss to see whether the start was unstable"))
    early_end = tr.first_step + t.early_frac * (tr.last_step - tr.first_step)
    early_spikes = [ep for ep in c.spikes if tr.steps[ep.index] <= early_end and not is_blip(c, ep)]
    k = bisect.bisect_right(tr.steps, early_end)
    early = tr.values[:k]
    rise_step = None
    if len(early) > 1 and tr.values[0] > 0:
        top = max(early)
        if top > tr.values[0] * (1 + t.early_rise):
            rise_step = tr.steps[early.index(top)]
    if not early_spikes and rise_step is None:
        return diagnosis(id_, passed(how + f"; no warmup, but the loss was stable through step "
                              f"{int(early_end)} (first {t.early_frac:.0%})", expected))
    steps = sorted({tr.steps[ep.index] for ep in early_spikes} | ({rise_step} if rise_step is not None else set()))
    what = []
    if early_spikes:
        what.append("loss spiked at " + ", ".join(f"step {tr.steps[ep.index]}" for ep in early_spikes[:5]))
    if rise_step is not None:
        what.append(f"loss rose to {fmt(max(early))} at step {rise_step} from {fmt(tr.values[0])} "
                    f"at step {tr.first_step} (> +{t.early_rise:.0%})")
    note = ("; the config sets warmup but the logged rate shows none: check that the scheduler "
            "in use (e.g. a DeepSpeed 'scheduler' section) applies it" if cfg_warmup else "")
    observed = how + " (no warmup); " + " and ".join(what) + f" in the first {t.early_frac:.0%} of steps" + note
    max_steps = cfg_value(c.configured, c.meta, "max_steps")
    example = f" = warmup_steps={max(1, round(0.03 * max_steps))}" if max_steps and max_steps > 0 else ""
    remediation = (f"Add warmup: warmup_ratio=0.03{example} (3 % of the steps; 0.05-0.1 for large "
                   "rates or small batches), or lr_scheduler_type='cosine' with warmup; keep "
                   "max_grad_norm=1.0.")
    evidence = {"first_lr": num(first), "peak_lr": num(peak), "configured_warmup": cfg_warmup,
                "early_end_step": int(early_end), "early_spike_steps": [tr.steps[ep.index] for ep in early_spikes],
                "early_rise_step": rise_step}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), tuple(steps))


def lr_never_decays(c: Context) -> Diagnosis:
    id_ = "logs.lr_never_decays"
    t, lr = c.t, c.lr
    if lr is None or not lr.values:
        return diagnosis(id_, skip("no learning_rate series logged"))
    sched = scheduler_of(c.configured)
    if sched is None:
        return diagnosis(id_, skip("no configured lr_scheduler_type to compare the logged rate with"))
    if sched in NON_DECAYING:
        return diagnosis(id_, passed(f"lr_scheduler_type={sched} does not decay by design",
                              "a constant rate after warmup"))
    if sched not in DECAYING:
        return diagnosis(id_, skip(f"lr_scheduler_type={sched} is not judged (decays conditionally or late)"))
    progress, how = c.progress()
    if progress is not None and progress < t.min_progress:
        return diagnosis(id_, skip(f"the log covers only {progress:.0%} of the run ({how}); judged from "
                            f"{t.min_progress:.0%}"))
    peak, pi = c.lr_peak, c.lr_peak_index
    low = min(lr.values[pi:])
    expected = f"lr_scheduler_type={sched}: the rate falls >= {t.lr_decay_tolerance:.0%} below its peak"
    if peak <= 0 or low <= peak * (1 - t.lr_decay_tolerance):
        return diagnosis(id_, passed(f"the rate fell from its peak {fmt(peak)} (step {lr.steps[pi]}) to "
                              f"{fmt(low)} ({how})", expected))
    observed = (f"the logged rate stays at {low / peak:.0%}+ of its peak {fmt(peak)} from step "
                f"{lr.steps[pi]} to step {lr.last_step} ({how}) although lr_scheduler_type={sched}")
    remediation = (
        f"The configured {sched} schedule is not being applied. Look for what overrides it: a "
        "DeepSpeed config with a 'scheduler' section (WarmupLR stays constant after warmup; use "
        "WarmupDecayLR / WarmupCosineLR or remove the section so the Trainer's scheduler is used), "
        "a custom optimizers=(optimizer, scheduler) passed to Trainer, or an unknown schedule "
        "length (max_steps=-1 with an IterableDataset: set max_steps).")
    evidence = {"scheduler": sched, "peak_lr": num(peak), "peak_step": lr.steps[pi],
                "lowest_after_peak": num(low), "last_lr": num(lr.values[-1]),
                "progress": num(progress)}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), (lr.steps[pi], lr.last_step))


def lr_mismatch(c: Context) -> Diagnosis:
    id_ = "logs.lr_mismatch"
    t, lr = c.t, c.lr
    want = cfg_value(c.configured, None, "learning_rate")
    if want is None:
        return diagnosis(id_, skip("no configured learning_rate"))
    if lr is None or not lr.values:
        return diagnosis(id_, skip("no learning_rate series logged"))
    if want <= 0:
        return diagnosis(id_, skip(f"configured learning_rate {want} is not positive"))
    peak, pi = c.lr_peak, c.lr_peak_index
    ratio = peak / want
    expected = f"peak logged rate within {t.lr_tolerance:.0%} of the configured {fmt(want)}"
    if abs(ratio - 1) <= t.lr_tolerance:
        return diagnosis(id_, passed(f"peak logged rate {fmt(peak)} at step {lr.steps[pi]} (configured "
                              f"{fmt(want)})", expected))
    if ratio < 1 and pi == len(lr.values) - 1 and len(lr.values) > 1 and lr.values[-2] < peak:
        return diagnosis(id_, skip(f"the rate is still rising at the last logged step {lr.last_step} "
                            f"({fmt(peak)}): warmup not finished"))
    observed = (f"peak logged learning rate {fmt(peak)} at step {lr.steps[pi]} is {fmt(ratio)}x "
                f"the configured {fmt(want)}")
    remediation = (
        "The optimizer is not using the configured learning_rate. Check a DeepSpeed config's "
        "optimizer.params.lr and scheduler.params.warmup_max_lr (set them to \"auto\" so the "
        "Trainer's value is used), a custom optimizer or optimizers=(...) passed to Trainer, a "
        "launcher or recipe that rescales the rate (e.g. by world size or batch size), or a "
        "typo in the exponent; logged rates are the first parameter group's (LoRA+ or "
        "layer-wise rates differ by design).")
    evidence = {"configured_lr": num(want), "peak_logged_lr": num(peak), "peak_step": lr.steps[pi],
                "ratio": num(ratio)}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), (lr.steps[pi],))
