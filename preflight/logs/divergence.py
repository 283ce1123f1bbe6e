"""Divergence: NaN/inf loss (beyond what fp16 loss scaling skips), loss spikes over the rolling
baseline and whether the loss recovered, gradient-norm explosions."""

from __future__ import annotations

from typing import Any

from preflight.findings import fail, passed, skip, warn
from preflight.logs.context import (
    MAD_TO_SIGMA,
    Context,
    Curve,
    Diagnosis,
    Episode,
    diagnosis,
    excursions,
    fmt,
    num,
    rolling,
    step_range,
    value_at,
)
from preflight.logs.overflow import within_scaler_budget


def _scaler_skips(c: Context, curve: Curve) -> bool:
    """Whether the curve's non-finite points are only what fp16 loss scaling skips: finite again
    at its last point, and few enough (:mod:`preflight.logs.overflow`)."""
    if not curve.bad_steps or not curve.ends_finite or not curve.steps:
        return False
    return within_scaler_budget(curve.bad_steps, min(curve.steps[0], curve.bad_steps[0]),
                                curve.steps[-1], calibration_steps=c.t.overflow_calibration_steps,
                                interval=c.t.overflow_interval)


_ZERO_REMEDIATION = (
    "A loss of exactly 0 is no trained model: no loss was computed there. Check that the batches "
    "have labels (all -100 when the prompt is longer than max_length/cutoff_len, or a template "
    "or masking bug), that a custom compute_loss returns the loss, and whether every step is "
    "skipped (fp16 loss scale collapsed: 'OVERFLOW! Skipping step' in the output; use bf16=True).")


def _zero_losses(c: Context) -> tuple[str, bool]:
    """A note on train_loss points logged as exactly 0.0 (left out of the curve), and whether
    they are more than skipped steps explain: more than fp16 loss scaling skips, or at the end."""
    tr = c.train
    if tr is None or not tr.zero_steps:
        return "", False
    zs = tr.zero_steps
    at_end = not tr.steps or zs[-1] > tr.steps[-1]
    explained = not at_end and within_scaler_budget(
        zs, min(zs[0], tr.steps[0]), max(zs[-1], tr.steps[-1]),
        calibration_steps=c.t.overflow_calibration_steps, interval=c.t.overflow_interval)
    note = (f"; train_loss is exactly 0.0 at {len(zs)} of {tr.raw_count} points "
            f"({step_range(zs)}{', through the last logged step' if at_end else ''})")
    note += (", left out of the curve: steps an fp16 engine skipped" if explained
             else ": no loss was computed there")
    return note, not explained


def nan_loss(c: Context) -> Diagnosis:
    id_ = "logs.nan_loss"
    curves = [x for x in (c.train, c.eval) if x is not None]
    if not curves:
        return diagnosis(id_, skip("no loss series logged"))
    bad = [x for x in curves if x.bad_step is not None]
    zero_note, zero_bad = _zero_losses(c)
    if not bad:
        observed = f"{' and '.join(x.name for x in curves)} finite at every logged point" + zero_note
        if zero_bad:
            zs = c.train.zero_steps  # type: ignore[union-attr]
            return diagnosis(id_, warn(observed, "finite, non-zero loss", _ZERO_REMEDIATION,
                                zero_points=len(zs), first_zero_step=zs[0], last_zero_step=zs[-1]),
                      (zs[0],))
        return diagnosis(id_, passed(observed, "finite loss"))
    first = min(bad, key=lambda x: x.bad_step)
    step = first.bad_step
    lr = value_at(c.lr, step)
    gn = value_at(c.grad, step)
    recovered_after = bool(first.steps) and first.steps[-1] > step
    # a few transient non-finite points are what fp16 loss scaling skips: worth a look, not a
    # failure; a loss non-finite at the end of the log, or too often, is
    transient = all(_scaler_skips(c, x) for x in bad)
    observed = (f"{first.name} is {first.bad_value} at step {step} (learning rate there "
                f"{fmt(lr)}); {first.bad_count} of {first.raw_count} points non-finite"
                + ("; finite again later" if recovered_after else "; never finite again"))
    if not first.ends_finite and recovered_after:
        observed += f", and non-finite again at the last logged step {first.bad_steps[-1]}"
    if first.last_finite_before_bad:
        observed += (f"; last finite {first.name} {fmt(first.last_finite_before_bad[1])} at step "
                     f"{first.last_finite_before_bad[0]}")
    observed += zero_note
    remediation = (
        ("A few non-finite losses that are finite again, at the start or about once per 1000 "
         "steps, are overflow steps that fp16 dynamic loss scaling skips; if they recur: "
         if transient else "")
        + f"Lower the learning rate (e.g. {fmt(lr / 2) if lr else 'halve it'}) and clip gradients "
        "(max_grad_norm=1.0); use bf16=True instead of fp16 (fp16 overflows above 65504); add "
        "warmup (warmup_ratio=0.03); check the batch at that step: a batch whose labels are all "
        "-100 (prompt longer than max_length, over-aggressive masking) gives a NaN loss; resume "
        "from the last checkpoint before the step.")
    evidence = {
        "series": first.name, "step": step, "value": str(first.bad_value),
        "learning_rate": num(lr), "grad_norm": num(gn),
        "non_finite_points": first.bad_count, "points": first.raw_count,
        "finite_again_later": recovered_after, "ends_finite": first.ends_finite,
        "within_fp16_scaler_budget": transient,
        "last_finite": ({"step": first.last_finite_before_bad[0],
                         "value": num(first.last_finite_before_bad[1])}
                        if first.last_finite_before_bad else None),
        "others": {x.name: x.bad_step for x in bad if x is not first},
    }
    if transient:
        observed += ("; transient, and no more than fp16 loss scaling skips (any in the first "
                     f"{c.t.overflow_calibration_steps} steps, then about one per "
                     f"{c.t.overflow_interval} steps)")
        return diagnosis(id_, warn(observed, "finite loss at every step", remediation, **evidence), (step,))
    return diagnosis(id_, fail(observed, "finite loss at every step", remediation, **evidence), (step,))


def find_spikes(c: Context) -> None:
    tr, t = c.train, c.t
    if tr is None or len(tr) < t.min_points:
        return
    meds, mads = rolling(tr.sub, t.spike_window, t.spike_min_history, with_mad=True)
    upper: list[float | None] = []
    for med, mad in zip(meds, mads):
        if med is None:
            upper.append(None)
        else:
            upper.append(med + max(t.spike_z * MAD_TO_SIGMA * mad, t.spike_min_rise * abs(med), 1e-12))
    c.spikes, c.spike_count, c.spikes_truncated = excursions(tr.values, tr.stride, upper,
                                                              t.spike_recovery)
    c.spike_meds, c.spike_mads = meds, mads


def _spike_record(c: Context, ep: Episode) -> dict[str, Any]:
    tr = c.train
    assert tr is not None
    step = tr.steps[ep.index]
    med, mad = c.spike_meds[ep.group], c.spike_mads[ep.group]
    z = (tr.values[ep.index] - med) / (MAD_TO_SIGMA * mad) if mad else None
    return {
        "step": step, "loss": num(tr.values[ep.index]), "baseline_median": num(med),
        "band_upper": num(ep.upper), "robust_z": num(z), "peak_loss": num(ep.peak),
        "recovered": ep.recovered,
        "back_in_band_step": tr.steps[ep.end] if ep.end < len(tr) else None,
        "excursions": ep.count, "learning_rate": num(value_at(c.lr, step)),
        "grad_norm": num(value_at(c.grad, step)),
    }


def is_blip(c: Context, ep: Episode) -> bool:
    """One point above the band, back in it at the next, by less than ``spike_blip_z``."""
    if ep.recovered is not True or ep.count != 1 or ep.end != ep.index + 1:
        return False
    tr = c.train
    mad = c.spike_mads[ep.group]
    if tr is None or not mad:
        return False
    return (tr.values[ep.index] - c.spike_meds[ep.group]) / (MAD_TO_SIGMA * mad) < c.t.spike_blip_z


def loss_spike(c: Context) -> Diagnosis:
    id_ = "logs.loss_spike"
    t, tr = c.t, c.train
    if tr is None:
        return diagnosis(id_, skip("no train_loss series"))
    if len(tr) < t.min_points:
        return diagnosis(id_, skip(f"only {len(tr)} finite train_loss points (need {t.min_points}) for a "
                            "rolling baseline"))
    expected = (f"no point above the rolling median + {t.spike_z} x 1.4826 x MAD of the previous "
                f"{t.spike_window} points (and >= {t.spike_min_rise:.0%} above the median)")
    if not c.spikes:
        return diagnosis(id_, passed(f"no spike over {len(tr)} points (steps {tr.first_step}-{tr.last_step})",
                              expected, stride=tr.stride))
    records = [_spike_record(c, ep) for ep in c.spikes]
    if c.spike_count == len(c.spikes) and c.spike_count < max(20, len(tr) // 100) and all(
            is_blip(c, ep) for ep in c.spikes):
        top = max(records, key=lambda r: r["robust_z"])
        observed = (f"no spike over {len(tr)} points (steps {tr.first_step}-{tr.last_step}); "
                    f"{len(records)} single point(s) above the band and back in it at the next "
                    f"point ({step_range([r['step'] for r in records])}; the largest {fmt(top['loss'])} "
                    f"vs median {fmt(top['baseline_median'])} at step {top['step']}, robust z "
                    f"{fmt(top['robust_z'])} < {c.t.spike_blip_z:g}): hard batches, not instability")
        return diagnosis(id_, passed(observed, expected, stride=tr.stride, blips=records))
    steps = tuple(r["step"] for r in records)
    bad = [r for r in records if r["recovered"] is False]
    unknown = [r for r in records if r["recovered"] is None]
    head = records[0] if not bad else bad[0]
    parts = []
    for r in records[:5]:
        state = {True: "recovered", False: "did not recover", None: "at the end of the log"}[r["recovered"]]
        parts.append(f"step {r['step']}: {fmt(r['loss'])} vs median {fmt(r['baseline_median'])} "
                     f"(lr {fmt(r['learning_rate'])}), {state}")
    count = c.spike_count
    more = f" (+{count - 5}{'+' if c.spikes_truncated else ''} more)" if count > 5 else ""
    observed = (f"{count}{'+' if c.spikes_truncated else ''} spike episode(s) in "
                f"{step_range(steps)}: " + "; ".join(parts) + more)
    evidence = {"spikes": records, "count": count, "stride": tr.stride,
                "truncated": c.spikes_truncated}
    frequent = count >= max(20, len(tr) // 100)
    if frequent:
        observed += (f"; {count}{'+' if c.spikes_truncated else ''} excursions are not a few bad "
                     "batches: the loss is heavier-tailed than its median band (batches from "
                     "tasks or sources of very different loss?)")
    lr = head["learning_rate"]
    if bad:
        remediation = (
            f"The loss diverged at step {head['step']} and stayed up. Restart from the last "
            f"checkpoint before it with a lower learning rate (e.g. {fmt(lr / 3) if lr else '1/3'}), "
            "max_grad_norm=1.0, warmup (warmup_ratio=0.03), and bf16=True rather than fp16; for "
            "LLM pre-/continued training adam_beta2=0.95 is steadier than 0.999.")
        return diagnosis(id_, fail(observed, expected, remediation, **evidence), steps)
    remediation = (
        "Isolated spikes that recover are usually bad batches: inspect the samples logged at "
        f"step(s) {', '.join(str(s) for s in steps[:5])} (very long, empty or mislabeled ones); "
        "if they recur, lower the learning rate (halve it), set max_grad_norm=1.0 and "
        "warmup_ratio=0.03." + (" A spike at the very end of the log cannot be judged yet: "
                                 "check again later." if unknown else ""))
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), steps)


def grad_norm_explosion(c: Context) -> Diagnosis:
    id_ = "logs.grad_norm_explosion"
    t, gn = c.t, c.grad
    if gn is None:
        return diagnosis(id_, skip("no grad_norm series logged (transformers >= 4.38 logs it with the loss)"))
    expected = (f"finite gradient norm, never {t.grad_factor:g}x its rolling median of the previous "
                f"{t.spike_window} points")
    remediation_base = ("Clip gradients (max_grad_norm=1.0, the Trainer default; check it isn't 0 "
                        "or None), lower the learning rate, add warmup (warmup_ratio=0.03), prefer "
                        "bf16=True to fp16, and inspect the batches at the onset.")
    overflow_note = ""
    if gn.bad_step is not None and _scaler_skips(c, gn):
        # what fp16 loss scaling skips: said, and the finite norms are still judged below
        overflow_note = (f"; {gn.bad_count} non-finite point(s) at {step_range(gn.bad_steps)}, "
                         "finite again: overflow steps that fp16 loss scaling skips (any in the "
                         f"first {t.overflow_calibration_steps} steps, then about one per "
                         f"{t.overflow_interval} steps), which is normal")
    elif gn.bad_step is not None:
        step = gn.bad_step
        lr = value_at(c.lr, step)
        persistent = not gn.steps or gn.steps[-1] < step
        observed = (f"grad_norm is {gn.bad_value} at step {step} (learning rate {fmt(lr)}); "
                    f"{gn.bad_count} of {gn.raw_count} points non-finite"
                    + ("; never finite again" if persistent else "; finite again later"))
        evidence = {"step": step, "value": str(gn.bad_value), "learning_rate": num(lr),
                    "non_finite_points": gn.bad_count, "persistent": persistent}
        if persistent:
            return diagnosis(id_, fail(observed, expected, remediation_base, **evidence), (step,))
        remediation = ("Occasional inf/NaN gradient norms with fp16 are overflow steps the loss "
                       "scaler skips; many of them mean the scale keeps collapsing. " + remediation_base)
        return diagnosis(id_, warn(observed, expected, remediation, **evidence), (step,))
    if len(gn) < t.min_points:
        return diagnosis(id_, skip(f"only {len(gn)} grad_norm points (need {t.min_points})" + overflow_note))
    meds, _ = rolling(gn.sub, t.spike_window, t.spike_min_history, with_mad=False)
    upper = [m * t.grad_factor if m is not None and m > 0 else None for m in meds]
    episodes, count, truncated = excursions(gn.values, gn.stride, upper, t.spike_recovery)
    if not episodes:
        return diagnosis(id_, passed(f"grad_norm within {t.grad_factor:g}x of its rolling median over "
                              f"{len(gn)} points" + overflow_note, expected))
    records = []
    for ep in episodes:
        step = gn.steps[ep.index]
        records.append({
            "step": step, "grad_norm": num(gn.values[ep.index]),
            "rolling_median": num(meds[ep.group]), "ratio": num(gn.values[ep.index] / meds[ep.group]),
            "peak": num(ep.peak), "sustained": ep.recovered is False, "learning_rate": num(value_at(c.lr, step)),
            "train_loss": num(value_at(c.train, step)),
            "back_below_step": gn.steps[ep.end] if ep.end < len(gn) else None,
        })
    steps = tuple(r["step"] for r in records)
    first = records[0]
    sustained = [r for r in records if r["sustained"]]
    observed = (f"grad_norm exploded at step {first['step']}: {fmt(first['grad_norm'])}, "
                f"{fmt(first['ratio'])}x its rolling median {fmt(first['rolling_median'])} "
                f"(learning rate {fmt(first['learning_rate'])}); {count}"
                f"{'+' if truncated else ''} episode(s) in {step_range(steps)}"
                + (f"; sustained from step {sustained[0]['step']}" if sustained else "; each subsided")
                + overflow_note)
    evidence = {"explosions": records, "count": count, "stride": gn.stride, "truncated": truncated}
    if sustained:
        return diagnosis(id_, fail(observed, expected, remediation_base, **evidence), steps)
    return diagnosis(id_, warn(observed, expected, remediation_base, **evidence), steps)
