"""Missing evidence and throughput: no eval logged, too few points, samples/s or tokens/s falling."""

from __future__ import annotations

from preflight.findings import passed, skip, warn
from preflight.logs.context import (
    Context,
    Diagnosis,
    diagnosis,
    fmt,
    median,
    num,
    sampled_median,
    step_range,
)


def no_eval(c: Context) -> Diagnosis:
    id_ = "logs.no_eval"
    ev = c.eval
    if ev is not None and ev.values:
        return diagnosis(id_, passed(f"{len(ev)} evaluations, steps {ev.first_step}-{ev.last_step}",
                              "eval_loss logged"))
    observed = ("no eval_loss logged" if ev is None or not ev.raw_count
                else f"eval_loss logged {ev.raw_count} times but never finite")
    remediation = (
        "Evaluate during training: pass eval_dataset= to the Trainer (hold out 2-10 % of the data) "
        "and set eval_strategy=\"steps\" (evaluation_strategy before transformers 4.41) with "
        "eval_steps at ~5-10 % of the run (e.g. eval_steps=200), plus per_device_eval_batch_size; "
        "then overfitting can be seen and load_best_model_at_end=True can keep the best checkpoint.")
    return diagnosis(id_, warn(observed, "an eval_loss series", remediation))


def too_few_points(c: Context) -> Diagnosis:
    id_ = "logs.too_few_points"
    t, tr = c.t, c.train
    remediation = ("Log more often: logging_steps=10 (or ~1 % of max_steps) and "
                   "logging_first_step=True; make sure the log read is the run's latest "
                   "(trainer_state.json is written at each checkpoint).")
    if tr is None:
        return diagnosis(id_, warn("no train_loss series logged", f">= {t.min_points} train_loss points",
                            remediation, points=0))
    n = tr.raw_count
    if n < t.min_points:
        return diagnosis(id_, warn(f"{n} train_loss point(s) ({step_range(tr.steps) or 'no finite step'}): "
                            "too few to judge trends, spikes or fit",
                            f">= {t.min_points} train_loss points", remediation, points=n))
    return diagnosis(id_, passed(f"{n} train_loss points", f">= {t.min_points} train_loss points", points=n))


def throughput_drop(c: Context) -> Diagnosis:
    id_ = "logs.throughput_drop"
    t, tp = c.t, c.throughput
    if tp is None or not tp.values:
        return diagnosis(id_, skip("no throughput series logged"))
    if len(tp) < t.min_points:
        return diagnosis(id_, skip(f"only {len(tp)} throughput points (need {t.min_points})"))
    n = len(tp)
    w = max(1, int(n * t.throughput_window))
    early = sampled_median(tp.values[:w])
    late = sampled_median(tp.values[-w:])
    unit = f" {tp.unit}" if tp.unit else ""
    expected = f"late median within {t.throughput_drop:.0%} of the early median"
    if early <= 0:
        return diagnosis(id_, skip(f"early throughput median {fmt(early)} is not positive"))
    drop = 1 - late / early
    what = (f"throughput median {fmt(early)}{unit} over the first {t.throughput_window:.0%} -> "
            f"{fmt(late)}{unit} over the last {t.throughput_window:.0%} ({-drop:+.0%})")
    if drop <= t.throughput_drop:
        return diagnosis(id_, passed(what, expected))
    # where it fell: the first sampled point whose 5-point running median is below the limit
    limit = early * (1 - t.throughput_drop)
    sub, idx = tp.sub, tp.sub_index
    onset = next((tp.steps[idx[g]] for g in range(len(sub))
                  if sub[g] < limit and median(sub[max(0, g - 4) : g + 1]) < limit), tp.steps[-w])
    observed = what + f", below {fmt(limit)}{unit} from about step {onset}"
    remediation = (
        "A sustained slowdown: check the dataloader (dataloader_num_workers=4+, "
        "dataloader_pin_memory=True, data on local disk rather than a network mount, no "
        "streaming stalls), GPU memory fragmentation (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True; "
        "a growing number of cudaMalloc retries), thermal or power throttling (nvidia-smi -q -d "
        "PERFORMANCE, clocks_throttle_reasons), other jobs sharing the GPU, and evaluation or "
        "checkpoint saves counted into the step time.")
    evidence = {"early_median": num(early), "late_median": num(late), "drop": num(drop),
                "onset_step": onset, "unit": tp.unit}
    return diagnosis(id_, warn(observed, expected, remediation, **evidence), (onset,))


# ---------------------------------------------------------------------------------------------
