"""Log diagnoses on generated curves with known properties: each fires where planted, and a clean
run fires nothing."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from preflight.findings import Status
from preflight.logs.diagnose import IDS, Diagnosis, Thresholds, diagnose
from preflight.logs.series import RunLog, Series

N = 1000
PEAK_LR = 2e-4
COSINE = {"learning_rate": PEAK_LR, "lr_scheduler_type": "cosine", "warmup_ratio": 0.03,
          "max_steps": N}


def cosine_lr(step: int, n: int = N, peak: float = PEAK_LR, warmup: int = 30) -> float:
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (n - warmup)))


def clean_loss(step: int, n: int = N) -> float:
    return 2.0 * math.exp(-3 * step / n) + 0.6


def make_log(n: int = N, *, loss=None, lr=None, grad=None, eval_every: int | None = 100,
             eval_fn=None, throughput=None, epochs: float = 3.0, noise: float = 0.02,
             seed: int = 0) -> RunLog:
    """A run of ``n`` steps logged every step: each curve a function of the step (defaults clean)."""
    rng = random.Random(seed)
    steps = list(range(1, n + 1))
    loss = loss or (lambda s: clean_loss(s, n))
    lr = lr or (lambda s: cosine_lr(s, n))
    grad = grad or (lambda s: 1.5 * math.exp(-s / n) + 0.3)
    throughput = throughput or (lambda s: 1000.0)
    series = {
        "train_loss": Series("train_loss", steps, [loss(s) * (1 + noise * rng.uniform(-1, 1)) for s in steps]),
        "learning_rate": Series("learning_rate", steps, [lr(s) for s in steps]),
        "grad_norm": Series("grad_norm", steps, [grad(s) * (1 + 0.05 * rng.uniform(-1, 1)) for s in steps]),
        "epoch": Series("epoch", steps, [epochs * s / n for s in steps]),
        "throughput": Series("throughput", steps,
                             [throughput(s) * (1 + 0.03 * rng.uniform(-1, 1)) for s in steps], "samples/s"),
    }
    if eval_every:
        esteps = list(range(eval_every, n + 1, eval_every))
        eval_fn = eval_fn or (lambda s: clean_loss(s, n) * 1.05 + 0.02)
        series["eval_loss"] = Series("eval_loss", esteps, [eval_fn(s) for s in esteps])
    return RunLog("generated", "jsonl", series, {})


def by_id(diagnoses: list[Diagnosis]) -> dict[str, Diagnosis]:
    assert [d.id for d in diagnoses] == list(IDS), "every id once, in order"
    for d in diagnoses:
        assert d.title
        if d.outcome.status in (Status.PASS, Status.SKIP):
            assert d.steps == ()
        json.dumps(d.outcome.evidence)  # evidence stays JSON-friendly
    return {d.id: d for d in diagnoses}


def fired(diagnoses: list[Diagnosis]) -> dict[str, Status]:
    return {d.id: d.outcome.status for d in diagnoses if d.outcome.status >= Status.WARN}


# --- a clean run --------------------------------------------------------------------------------


def test_clean_run_fires_nothing():
    ds = diagnose(make_log(), configured=COSINE)
    d = by_id(ds)
    assert fired(ds) == {}, {i: d[i].outcome.observed for i in fired(ds)}
    # with config and eval the schedule and fit checks really ran (pass, not skip)
    for id_ in ("logs.nan_loss", "logs.loss_spike", "logs.grad_norm_explosion", "logs.no_warmup",
                "logs.lr_never_decays", "logs.lr_mismatch", "logs.overfitting", "logs.underfitting",
                "logs.fast_convergence", "logs.no_eval", "logs.too_few_points", "logs.throughput_drop"):
        assert d[id_].outcome.status == Status.PASS, (id_, d[id_].outcome.observed)


def test_clean_run_without_config_skips_config_checks():
    d = by_id(diagnose(make_log()))
    assert d["logs.lr_never_decays"].outcome.status == Status.SKIP
    assert d["logs.lr_mismatch"].outcome.status == Status.SKIP
    assert not fired(list(d.values()))


@pytest.mark.parametrize("seed", range(5))
def test_noisy_clean_runs_stay_quiet(seed):
    """Heavier (10 %) per-step noise alone raises no spike."""
    ds = diagnose(make_log(noise=0.10, seed=seed), configured=COSINE)
    assert fired(ds) == {}


# --- divergence ---------------------------------------------------------------------------------


def test_recovered_spike_is_a_warning_at_its_step():
    k = 600
    log = make_log(loss=lambda s: clean_loss(s) * (4 if s == k else 1))
    d = by_id(diagnose(log, configured=COSINE))
    spike = d["logs.loss_spike"]
    assert spike.outcome.status == Status.WARN
    assert spike.steps == (k,)
    rec = spike.outcome.evidence["spikes"][0]
    assert rec["step"] == k and rec["recovered"] is True
    assert rec["learning_rate"] == pytest.approx(cosine_lr(k), rel=1e-5)
    assert "600" in spike.outcome.observed and "recovered" in spike.outcome.observed
    assert fired(list(d.values())) == {"logs.loss_spike": Status.WARN}


def _per_batch_losses(n: int, seed: int) -> list[float]:
    """Loss logged every step (logging_steps=1) of mixed SFT data: lognormal noise of 12 % and 2 %
    hard batches (long or unusual samples) at 1.2-1.6x, as single-batch losses are."""
    rng = random.Random(seed)
    out = []
    for s in range(1, n + 1):
        v = (1.1 + 0.7 * math.exp(-s / 400)) * math.exp(rng.gauss(0, 0.12))
        out.append(v * rng.uniform(1.2, 1.6) if rng.random() < 0.02 else v)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_hard_batches_in_a_per_step_log_are_not_spikes(seed):
    n = 3000
    log = make_log(n)
    log.series["train_loss"].values = _per_batch_losses(n, seed)
    spike = by_id(diagnose(log))["logs.loss_spike"]
    assert spike.outcome.status == Status.PASS, spike.outcome.observed
    blips = spike.outcome.evidence["blips"]  # still reported, each back at the next point
    assert blips and all(b["back_in_band_step"] == b["step"] + 1 and b["robust_z"] < 12 for b in blips)
    assert "hard batches" in spike.outcome.observed
    # a jump far outside that noise, or one that lasts two points, is still a spike
    for k, factor, width in ((1500, 4.0, 1), (1500, 1.9, 3)):
        values = _per_batch_losses(n, seed)
        values[k - 1 : k - 1 + width] = [1.2 * factor] * width
        log.series["train_loss"].values = values
        spike = by_id(diagnose(log))["logs.loss_spike"]
        assert spike.outcome.status == Status.WARN and k in spike.steps, (factor, width)


def test_unrecovered_spike_is_a_failure():
    k = 600
    log = make_log(loss=lambda s: clean_loss(s) * (4 if s >= k else 1))
    d = by_id(diagnose(log, configured=COSINE))
    spike = d["logs.loss_spike"]
    assert spike.outcome.status == Status.FAIL
    assert spike.steps == (k,)  # one divergence is one episode
    assert spike.outcome.evidence["spikes"][0]["recovered"] is False
    assert "lower learning rate" in spike.outcome.remediation


def test_nan_loss_fails_at_its_step_with_the_learning_rate():
    n_at = 700
    log = make_log(loss=lambda s: math.nan if s >= n_at else clean_loss(s))
    d = by_id(diagnose(log, configured=COSINE))
    nan = d["logs.nan_loss"]
    assert nan.outcome.status == Status.FAIL
    assert nan.steps == (n_at,)
    ev = nan.outcome.evidence
    assert ev["step"] == n_at and ev["value"] == "nan"
    assert ev["learning_rate"] == pytest.approx(cosine_lr(n_at), rel=1e-5)
    assert ev["last_finite"]["step"] == n_at - 1
    assert f"step {n_at}" in nan.outcome.observed and "bf16=True" in nan.outcome.remediation
    # the finite part before the NaN is still judged, and judged clean
    assert d["logs.loss_spike"].outcome.status == Status.PASS


def test_inf_loss_counts_as_non_finite():
    log = make_log(loss=lambda s: math.inf if s == 300 else clean_loss(s))
    nan = by_id(diagnose(log))["logs.nan_loss"]
    # one transient point: what fp16 loss scaling skips, a warning at its step
    assert nan.outcome.status == Status.WARN and nan.steps == (300,)
    assert nan.outcome.evidence["finite_again_later"] is True
    assert nan.outcome.evidence["within_fp16_scaler_budget"] is True


def _fp16_log(n: int, bad_loss=(), bad_grad=()) -> RunLog:
    log = make_log(n)
    for s in bad_loss:
        log.series["train_loss"].values[s - 1] = math.nan
    for i, s in enumerate(bad_grad):
        log.series["grad_norm"].values[s - 1] = math.inf if i % 2 else math.nan
    return log


def test_fp16_overflow_steps_are_not_a_divergence():
    """fp16 loss scaling skips steps while its scale calibrates (here steps 1-12) and about once
    per growth of the scale (steps 2013, 4013 of 6000): non-finite gradient norms there pass,
    and a NaN loss on two early steps warns; neither fails."""
    n = 6000
    calibration, growth = list(range(1, 13)), [2013, 4013]
    ds = diagnose(_fp16_log(n, bad_loss=[4, 5], bad_grad=calibration + growth))
    d = by_id(ds)
    g = d["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.PASS, g.outcome.observed
    assert "14 non-finite point(s) at steps 1-4013" in g.outcome.observed
    assert "fp16 loss scaling" in g.outcome.observed
    nan = d["logs.nan_loss"]
    assert nan.outcome.status == Status.WARN and nan.steps == (4,)
    assert "transient" in nan.outcome.observed and "fp16" in nan.outcome.remediation
    assert not any(x.outcome.status == Status.FAIL for x in ds)
    # the finite norms are still judged: an explosion among them is found, the note kept
    log = _fp16_log(n, bad_grad=calibration)
    log.series["grad_norm"].values[2999:3010] = [v * 100 for v in log.series["grad_norm"].values[2999:3010]]
    g = by_id(diagnose(log))["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.WARN and g.steps[0] == 3000 and "fp16 loss scaling" in g.outcome.observed


def test_non_finite_points_beyond_the_fp16_scaler_are_judged():
    n = 6000
    spread = list(range(100, 6000, 300))  # 20 after the calibration: more than 1 + 6000 // 1000
    g = by_id(diagnose(_fp16_log(n, bad_grad=spread)))["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.WARN and g.steps == (100,)
    assert "20 of 6000 points non-finite" in g.outcome.observed
    nan = by_id(diagnose(_fp16_log(n, bad_loss=spread)))["logs.nan_loss"]
    assert nan.outcome.status == Status.FAIL and nan.outcome.evidence["within_fp16_scaler_budget"] is False
    # early and transient, but non-finite again at the very end: a divergence, not the scaler
    nan = by_id(diagnose(_fp16_log(n, bad_loss=[3, 4, n])))["logs.nan_loss"]
    assert nan.outcome.status == Status.FAIL
    assert f"non-finite again at the last logged step {n}" in nan.outcome.observed


@pytest.mark.parametrize(("length", "status"), [(5, Status.WARN), (None, Status.FAIL)])
def test_grad_norm_explosion_at_its_step(length, status):
    m = 450
    end = m + length if length else N + 1

    def grad(s: int) -> float:
        return (1.5 * math.exp(-s / N) + 0.3) * (50 if m <= s < end else 1)

    d = by_id(diagnose(make_log(grad=grad), configured=COSINE))
    g = d["logs.grad_norm_explosion"]
    assert g.outcome.status == status
    assert g.steps[0] == m and len(g.steps) == 1
    rec = g.outcome.evidence["explosions"][0]
    assert rec["learning_rate"] == pytest.approx(cosine_lr(m), rel=1e-5)
    assert rec["ratio"] > 10
    assert f"step {m}" in g.outcome.observed


def test_non_finite_grad_norm():
    log = make_log()
    log.series["grad_norm"].values[200] = math.inf  # an fp16 overflow step, finite again after
    g = by_id(diagnose(log))["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.PASS and "1 non-finite point(s) at step 201" in g.outcome.observed
    log.series["grad_norm"].values[500] = math.nan  # a second one in 1000 steps is one too many
    g = by_id(diagnose(log))["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.WARN and g.steps == (201,)
    log = make_log()
    log.series["grad_norm"].values[900:] = [math.nan] * (N - 900)  # never finite again
    g = by_id(diagnose(log))["logs.grad_norm_explosion"]
    assert g.outcome.status == Status.FAIL and g.steps == (901,)
    assert g.outcome.evidence["learning_rate"] == pytest.approx(cosine_lr(901), rel=1e-5)


# --- learning-rate schedule ---------------------------------------------------------------------


def test_no_warmup_with_an_early_spike():
    log = make_log(lr=lambda s: PEAK_LR * (1 - s / N),
                   loss=lambda s: clean_loss(s) * (5 if s == 40 else 1))
    d = by_id(diagnose(log, configured={"learning_rate": PEAK_LR, "lr_scheduler_type": "linear",
                                        "warmup_steps": 0, "max_steps": N}))
    w = d["logs.no_warmup"]
    assert w.outcome.status == Status.WARN
    assert w.steps == (40,)
    assert "warmup_ratio=0.03" in w.outcome.remediation and "warmup_steps=30" in w.outcome.remediation
    assert d["logs.loss_spike"].outcome.status == Status.WARN


def test_no_warmup_with_the_loss_rising_before_any_baseline():
    log = make_log(lr=lambda s: PEAK_LR, loss=lambda s: 2.0 + (3.0 if 3 <= s <= 8 else 0.0) - s / N)
    w = by_id(diagnose(log))["logs.no_warmup"]
    assert w.outcome.status == Status.WARN
    assert w.outcome.evidence["early_rise_step"] in range(3, 9)


def test_no_warmup_but_a_calm_start_passes():
    log = make_log(lr=lambda s: PEAK_LR * (1 - s / N))
    assert by_id(diagnose(log))["logs.no_warmup"].outcome.status == Status.PASS


def test_constant_rate_with_configured_cosine_never_decays():
    log = make_log(lr=lambda s: PEAK_LR)
    d = by_id(diagnose(log, configured=COSINE))
    nd = d["logs.lr_never_decays"]
    assert nd.outcome.status == Status.WARN
    assert "cosine" in nd.outcome.observed and "DeepSpeed" in nd.outcome.remediation
    assert nd.steps == (1, N)
    # configured constant: by design
    const = dict(COSINE, lr_scheduler_type="constant")
    assert by_id(diagnose(log, configured=const))["logs.lr_never_decays"].outcome.status == Status.PASS
    # only 10 % of max_steps logged: too early to say
    early = dict(COSINE, max_steps=10 * N)
    assert by_id(diagnose(log, configured=early))["logs.lr_never_decays"].outcome.status == Status.SKIP


def test_max_steps_minus_one_in_the_config_leaves_the_logs_own_length():
    """training_args.json always says max_steps=-1 (use num_train_epochs): the log's max_steps
    still tells how far a live run is, so a cosine rate not yet decayed 10 % in is not judged."""
    n = 1000
    log = make_log(n, lr=lambda s: PEAK_LR)
    log.series = {k: v for k, v in log.series.items() if k != "epoch"}  # a W&B export: no epoch
    for series in log.series.values():
        cut = sum(1 for s in series.steps if s <= 100)
        series.steps, series.values = series.steps[:cut], series.values[:cut]
    log.meta["max_steps"] = n
    config = {"lr_scheduler_type": "cosine", "max_steps": -1}
    d = by_id(diagnose(log, configured=config))["logs.lr_never_decays"]
    assert d.outcome.status == Status.SKIP and "max_steps=1000" in d.outcome.observed
    log.meta.pop("max_steps")  # negative: nothing says the run is longer than its log
    d = by_id(diagnose(log, configured=config))["logs.lr_never_decays"]
    assert d.outcome.status == Status.WARN


def test_logged_rate_ten_times_the_configured():
    log = make_log()  # peak 2e-4 logged
    cfg = dict(COSINE, learning_rate=2e-5)
    mm = by_id(diagnose(log, configured=cfg))["logs.lr_mismatch"]
    assert mm.outcome.status == Status.WARN
    assert mm.outcome.evidence["ratio"] == pytest.approx(10.0)
    assert mm.outcome.evidence["peak_step"] == 30
    assert "\"auto\"" in mm.outcome.remediation
    # string values from a YAML file are read as numbers
    assert by_id(diagnose(log, configured=dict(COSINE, learning_rate="2e-4")))[
        "logs.lr_mismatch"].outcome.status == Status.PASS


# --- fit ----------------------------------------------------------------------------------------


def test_overfitting_from_the_right_eval_step():
    # eval every 100 steps over 3 epochs (epoch = 3*step/N); eval bottoms out at step 400
    best = 400

    def eval_fn(s: int) -> float:
        return 1.0 - 0.001 * s if s <= best else 1.0 - 0.001 * best + 0.0015 * (s - best)

    d = by_id(diagnose(make_log(eval_fn=eval_fn), configured=COSINE))
    o = d["logs.overfitting"]
    assert o.outcome.status == Status.WARN
    ev = o.outcome.evidence
    assert ev["onset_step"] == best and ev["best_step"] == best
    assert ev["best_eval_loss"] == pytest.approx(0.6)
    assert ev["epoch_at_onset"] == pytest.approx(1.2)
    assert o.steps == tuple(range(best, N + 1, 100))
    assert ev["train_loss_at_end"] < ev["train_loss_at_onset"]
    for flag in ("load_best_model_at_end=True", 'metric_for_best_model="eval_loss"',
                 "EarlyStoppingCallback", "num_train_epochs=2"):
        assert flag in o.outcome.remediation
    assert fired(list(d.values())) == {"logs.overfitting": Status.WARN}


def test_eval_rising_while_train_rises_too_is_not_overfitting():
    log = make_log(loss=lambda s: 1.0 + s / N, eval_fn=lambda s: 1.1 + s / N)
    assert by_id(diagnose(log))["logs.overfitting"].outcome.status == Status.PASS


def test_three_tiny_eval_rises_are_noise():
    vals = iter([1.0, 0.9, 0.8, 0.801, 0.802, 0.803, 0.79, 0.78, 0.77, 0.76])
    table = {s: next(vals) for s in range(100, N + 1, 100)}
    o = by_id(diagnose(make_log(eval_fn=table.__getitem__)))["logs.overfitting"]
    assert o.outcome.status == Status.PASS


def test_flat_curve_is_underfitting():
    log = make_log(loss=lambda s: 2.3 - 0.05 * s / N, eval_fn=lambda s: 2.35)
    u = by_id(diagnose(log, configured=COSINE))["logs.underfitting"]
    assert u.outcome.status == Status.WARN
    assert u.steps == (1, N)
    assert u.outcome.evidence["relative_drop"] < 0.1
    assert "target_modules" in u.outcome.remediation and "num_train_epochs" in u.outcome.remediation


def test_loss_near_zero_by_ten_percent_is_fast_convergence():
    tau = 0.1 * N / math.log(200)  # 2 * exp(-step / tau) = 0.01 at step N/10
    log = make_log(loss=lambda s: max(2 * math.exp(-s / tau), 0.005), noise=0.0)
    f = by_id(diagnose(log, configured=COSINE))["logs.fast_convergence"]
    assert f.outcome.status == Status.WARN
    (step,) = f.steps
    assert 60 <= step <= 100  # below 0.05 at ~step 74
    assert "preflight data" in f.outcome.remediation


def test_skipped_steps_logged_as_zero_loss_are_not_convergence():
    """DeepSpeed logs loss 0.0 for steps it skipped on fp16 overflow, often the first few while
    the loss scale calibrates: no sign of a model that sees the answers."""
    zeros = set(range(1, 9)) | {300, 301, 302}
    log = make_log(loss=lambda s: 0.0 if s in zeros else clean_loss(s))
    d = by_id(diagnose(log, configured=COSINE))
    assert d["logs.fast_convergence"].outcome.status == Status.PASS, d["logs.fast_convergence"].outcome.observed
    # real losses near zero among the zeros still count
    log = make_log(loss=lambda s: 0.0 if s in zeros else min(clean_loss(s), 0.01 if s > 20 else 9.0))
    f = by_id(diagnose(log, configured=COSINE))["logs.fast_convergence"]
    assert f.outcome.status == Status.WARN and f.steps == (23,)
    # nor a baseline the first real loss "spikes" from, nor the start fit is judged from
    calibration = set(range(1, 31))  # DeepSpeed from 2^32: ~30 skipped steps logged as 0.0
    ds = diagnose(make_log(loss=lambda s: 0.0 if s in calibration else clean_loss(s)), configured=COSINE)
    assert fired(ds) == {}, {d.id: d.outcome.observed for d in ds if d.outcome.status >= Status.WARN}
    nan = by_id(ds)["logs.nan_loss"]
    assert "exactly 0.0 at 30 of 1000 points (steps 1-30)" in nan.outcome.observed
    flat = by_id(diagnose(make_log(loss=lambda s: 0.0 if s in calibration else 1.5), configured=COSINE))
    assert flat["logs.underfitting"].outcome.status == Status.WARN


def test_a_loss_of_exactly_zero_for_long_is_reported():
    """Past what skipped steps explain (here from step 600 to the end), a loss of exactly 0.0 means
    no loss is computed (labels all -100): a warning at its first step, not a quiet pass."""
    ds = diagnose(make_log(loss=lambda s: 0.0 if s >= 600 else clean_loss(s)), configured=COSINE)
    nan = by_id(ds)["logs.nan_loss"]
    assert nan.outcome.status == Status.WARN and nan.steps == (600,)
    assert "through the last logged step" in nan.outcome.observed and "-100" in nan.outcome.remediation
    assert by_id(ds)["logs.loss_spike"].outcome.status == Status.PASS


def test_the_last_finite_loss_before_a_nan_is_a_real_one_not_a_skipped_step():
    """A NaN after steps skipped on fp16 overflow (loss 0.0): the report names the last real loss
    before it, not a skipped step's 0."""
    skipped = {97, 98, 99}
    log = make_log(loss=lambda s: float("nan") if s >= 100 else 0.0 if s in skipped else clean_loss(s))
    nan = by_id(diagnose(log, configured=COSINE))["logs.nan_loss"]
    assert nan.outcome.status == Status.FAIL and nan.outcome.evidence["last_finite"]["step"] == 96
    assert nan.outcome.evidence["last_finite"]["value"] > 1.0  # a real loss (noise on the curve), not 0
    plain = by_id(diagnose(make_log(loss=lambda s: float("nan") if s >= 100 else clean_loss(s)),
                           configured=COSINE))["logs.nan_loss"]
    assert plain.outcome.evidence["last_finite"]["step"] == 99


# --- missing evidence, throughput ---------------------------------------------------------------


def test_throughput_halving():
    log = make_log(throughput=lambda s: 1000.0 if s < 500 else 500.0)
    t = by_id(diagnose(log, configured=COSINE))["logs.throughput_drop"]
    assert t.outcome.status == Status.WARN
    assert t.outcome.evidence["drop"] == pytest.approx(0.5, abs=0.05)
    assert 500 <= t.outcome.evidence["onset_step"] <= 505
    assert "samples/s" in t.outcome.observed and "dataloader_num_workers" in t.outcome.remediation


def test_missing_eval():
    d = by_id(diagnose(make_log(eval_every=None), configured=COSINE))
    assert d["logs.overfitting"].outcome.status == Status.SKIP
    ne = d["logs.no_eval"]
    assert ne.outcome.status == Status.WARN
    assert 'eval_strategy="steps"' in ne.outcome.remediation and "eval_steps" in ne.outcome.remediation
    assert fired(list(d.values())) == {"logs.no_eval": Status.WARN}


def test_five_points_only():
    d = by_id(diagnose(make_log(5, eval_every=None)))
    tf = d["logs.too_few_points"]
    assert tf.outcome.status == Status.WARN and "5 train_loss" in tf.outcome.observed
    assert "logging_steps" in tf.outcome.remediation
    for id_ in ("logs.loss_spike", "logs.underfitting", "logs.fast_convergence",
                "logs.grad_norm_explosion", "logs.throughput_drop"):
        assert d[id_].outcome.status == Status.SKIP


def test_empty_log_skips_or_warns_without_crashing():
    d = by_id(diagnose(RunLog("empty", "jsonl", {}, {}), configured=COSINE))
    assert d["logs.too_few_points"].outcome.status == Status.WARN
    assert d["logs.no_eval"].outcome.status == Status.WARN
    assert all(x.outcome.status == Status.SKIP for k, x in d.items()
               if k not in ("logs.too_few_points", "logs.no_eval"))


def test_thresholds_are_configurable():
    log = make_log(loss=lambda s: clean_loss(s) * (1.5 if s == 600 else 1))
    assert by_id(diagnose(log))["logs.loss_spike"].outcome.status == Status.WARN
    lax = Thresholds(spike_z=50.0, spike_min_rise=1.0)
    assert by_id(diagnose(log, thresholds=lax))["logs.loss_spike"].outcome.status == Status.PASS


# --- a million points ---------------------------------------------------------------------------


def test_million_points_downsampled_and_timed(capsys):
    n = 1_000_000
    rng = random.Random(1)
    steps = list(range(1, n + 1))
    k = 654_321
    loss = [(2.0 * math.exp(-3 * s / n) + 0.6) * (1 + 0.05 * rng.uniform(-1, 1)) for s in steps]
    loss[k - 1] *= 4  # a single-point spike between downsampled points is still found
    lr = [cosine_lr(s, n, warmup=30_000) for s in steps]
    grad = [1.0 + 0.1 * rng.uniform(-1, 1) for _ in steps]
    tp = [1000.0 + rng.uniform(-30, 30) for _ in steps]
    epoch = [3 * s / n for s in steps]
    esteps = list(range(10_000, n + 1, 10_000))
    log = RunLog("big", "jsonl", {
        "train_loss": Series("train_loss", steps, loss),
        "learning_rate": Series("learning_rate", steps, lr),
        "grad_norm": Series("grad_norm", steps, grad),
        "throughput": Series("throughput", steps, tp, "tokens/s"),
        "epoch": Series("epoch", steps, epoch),
        "eval_loss": Series("eval_loss", esteps, [2.0 * math.exp(-3 * s / n) + 0.65 for s in esteps]),
    }, {})
    t0 = time.perf_counter()
    ds = diagnose(log, configured=dict(COSINE, max_steps=n))
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\ndiagnose(): 5 series of 1,000,000 points + 100 evals: {elapsed * 1000:.0f} ms")
    assert fired(ds) == {"logs.loss_spike": Status.WARN}
    assert by_id(ds)["logs.loss_spike"].steps == (k,)
