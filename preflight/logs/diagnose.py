"""Diagnoses of a run's logged curves: divergence, learning-rate schedule, fit, missing evidence.

``diagnose(log)`` returns one :class:`Diagnosis` per id in :data:`IDS`, always all of them and in
that order: a pass or skip where nothing was found or the evidence is missing, so a report shows
what was checked. Each carries an :class:`~preflight.findings.Outcome` (observed with the step
range, expected, a concrete remediation, evidence) and the steps to mark on a chart.

Speed. Logs can hold a million points and this is pure Python (numpy may be absent), so every
pass is O(n) and the inner loops over points run in C (``max``/``min``/``sum`` over slices).
The rolling median and MAD that a spike is measured against are NOT computed over every point:
they are computed over the series DOWNSAMPLED to at most ``Thresholds.max_points`` points: the
series is cut into blocks of ``stride = ceil(n / max_points)`` points and one point is taken from
each block (at a pseudo-random offset, so a periodic pattern such as alternating batches cannot
alias into the sample), and the window is ``spike_window`` of those. Every raw point is then
compared with the baseline of the blocks strictly before its own. Sampled single points (not
block medians) keep the baseline's spread at the spread of single points, so the z-score means
the same at any length; and because every raw point is still compared (one C-level ``max`` per
block, point by point only in a block that holds an excursion), a one-point spike between two
samples is found. For logs of up to ``max_points`` points the stride is 1 and this is the exact
rolling window. Window and recovery lengths are in sampled points, i.e. the same share of the
run at any length.

Series are read as the readers give them (``preflight.logs.series``): ``steps`` ascending,
``values`` floats with NaN/inf kept.
"""

from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any

from preflight.findings import Outcome, Status, fail, passed, skip, warn
from preflight.logs.overflow import within_scaler_budget

if TYPE_CHECKING:
    from preflight.logs.series import RunLog

IDS = (
    "logs.nan_loss",
    "logs.loss_spike",
    "logs.grad_norm_explosion",
    "logs.no_warmup",
    "logs.lr_never_decays",
    "logs.lr_mismatch",
    "logs.overfitting",
    "logs.underfitting",
    "logs.fast_convergence",
    "logs.no_eval",
    "logs.too_few_points",
    "logs.throughput_drop",
)

TITLES = {
    "logs.nan_loss": "Loss stays finite (no NaN/inf)",
    "logs.loss_spike": "Loss spikes",
    "logs.grad_norm_explosion": "Gradient-norm explosion",
    "logs.no_warmup": "Learning-rate warmup",
    "logs.lr_never_decays": "Learning rate decays as configured",
    "logs.lr_mismatch": "Logged learning rate matches the config",
    "logs.overfitting": "Overfitting (eval loss rising while train loss falls)",
    "logs.underfitting": "Underfitting (train loss flat)",
    "logs.fast_convergence": "Suspiciously fast convergence",
    "logs.no_eval": "Evaluation loss logged",
    "logs.too_few_points": "Enough logged points",
    "logs.throughput_drop": "Throughput holds up",
}

# Schedules that bring the rate down over the run. warmup_stable_decay decays only in its last
# phase and reduce_lr_on_plateau only when the metric stalls: neither is judged.
DECAYING = {"linear", "cosine", "cosine_with_restarts", "polynomial", "inverse_sqrt",
            "cosine_with_min_lr", "cosine_warmup_with_min_lr"}
NON_DECAYING = {"constant", "constant_with_warmup"}

_MAX_EVENTS = 50          # spike / explosion episodes kept in evidence
_MAX_ONSETS = 1000        # scanning stops after this many (the count is then reported as N+)
_MAD_TO_SIGMA = 1.4826    # MAD * this = standard deviation for normal noise


@dataclass(frozen=True)
class Diagnosis:
    id: str
    title: str
    outcome: Outcome
    steps: tuple[int, ...] = ()   # where it happened, for marking the chart; empty for pass/skip


@dataclass(frozen=True)
class Thresholds:
    """Every limit a diagnosis uses. The defaults, and why.

    spike_z: 6.0. Robust z-score (distance above the rolling median in units of
        1.4826 * MAD) over which a point is a spike. Iglewicz & Hoaglin's 3.5 is meant for a
        single sample; a log is 10^3-10^6 points of heavy-tailed per-batch noise, where 3.5 would
        flag ordinary hard batches. At 6 normal noise gives ~2e-9 false alarms per point, while
        the jumps of a divergence are typically tens of robust deviations.
    spike_window: 50 (sampled) points of history for the median/MAD: enough that the median's
        standard error is ~0.18 sigma, short enough to follow a falling loss.
    spike_min_history: 10 points of history before any point is judged (no baseline before).
    spike_min_rise: 0.10. A spike must also exceed the median by 10 % of the median; this is the
        floor for smooth (low-noise) curves, where the MAD is ~0 and any uptick would count.
    spike_recovery: 20 (sampled) points. A spike has recovered when the median of the 20 points
        after it is back inside the pre-spike band (a bad batch: warn); otherwise the run has
        diverged (fail).
    spike_blip_z: 12.0. A single point above the band that is back inside it at the very next
        point, at a robust z under 12, is a hard batch, not instability (the next batch's loss is
        normal: the optimizer did not leave its course); it is reported, not warned about. Per-batch
        losses of mixed fine-tuning data are heavy-tailed (long or unusual samples: a t-like tail,
        where 6 robust deviations are passed every few hundred points, and only ~2x more rarely
        at 12), so at logging_steps=1-5 a healthy run has several such points. A larger jump,
        one lasting two points or more, or many of them (see the heavier-tailed note) still warns.
    grad_factor: 10.0. One order of magnitude over the rolling median of the gradient norm is an
        explosion; clipped runs wander by 2-3x, an explosion is 10-1000x.
    early_frac: 0.10. "Early" for the warmup check: the first 10 % of the logged steps, where a
        run without warmup blows up (Adam's second moments are still ~0).
    early_rise: 0.50. Early instability also counts when the loss rises 50 % over its first
        logged value in that window (before a spike baseline exists).
    warmup_peak_frac: 0.90. The first logged rate at >= 90 % of the peak means no warmup ramp.
    lr_decay_tolerance: 0.10. A decaying schedule has decayed when the rate fell at least 10 %
        below its peak (a linear schedule is at 75 %, cosine at 85 %, a quarter into the run).
    min_progress: 0.25. The decay and underfitting checks wait until the log covers a quarter of
        the planned run (max_steps or num_train_epochs, where known).
    lr_tolerance: 0.20. Logged peak vs configured rate: coarse logging around the warmup peak
        misses the peak by a few percent; typos and wrong overrides are 2-10x.
    overfit_evals: 3 consecutive rising evaluations while the train loss falls.
    overfit_min_rise: 0.02. The rise must also total 2 % of the eval loss where it began:
        three rises in a row happen by chance (1 in 24 for i.i.d. noise) on a flat curve.
    underfit_min_drop: 0.10. Train loss falling less than 10 % from its start over the run is
        flat: even a good starting point drops more than that in fine-tuning.
    pref_min_accuracy: 0.55. A preference run (TRL's DPO/ORPO/CPO trainers, LLaMA-Factory's
        stage dpo: rewards/accuracies or rewards/margins logged) is judged by what it learned,
        not by the loss drop: the DPO loss -log sigmoid(margin) starts at ln 2 = 0.693 and a
        healthy run ends around 0.3-0.6, or above 0.55 when logged only from step 100 (the
        published firefly-qwen1.5-en-7b DPO table: loss 0.61 -> 0.56, a 9 % drop, while
        rewards/accuracies rose 0.66 -> 0.73 and rewards/margins 0.39 -> 1.36). TRL's docs
        define rewards/accuracies as how often the chosen reward exceeds the rejected one
        (https://huggingface.co/docs/trl/dpo_trainer, "Logged metrics"): 0.5 is chance. A mean
        under 0.55 over the last quarter of the points (at least 5) is nothing learned; a
        per-batch accuracy over 8 pairs has a standard deviation of ~0.18, so the mean of 5
        such points is within 0.08 of the truth 2 sigma in 3, and healthy runs sit at 0.65-0.8.
        A mean reward margin below 0 there means the rejected answers score higher: chosen and
        rejected swapped.
    fast_loss: 0.05. Train loss near zero (cross-entropy 0.05 is ~95 % of the probability mass
        on the right token), which an honest run rarely reaches early.
    fast_frac: 0.20. "Early" for fast convergence: the first 20 % of the steps (or the first
        epoch, where the run has two or more).
    min_points: 10 train-loss points; fewer is too little for any trend.
    throughput_drop: 0.25. A sustained fall of 25 % from the early median to the late median:
        fixed-shape jobs vary < 10 %, variable-length batches ~15 %.
    throughput_window: 0.25. The early and late medians are over the first and last 25 %.
    max_points: 5000. The downsampling cap for rolling statistics (see the module docstring).
    overflow_calibration_steps: 50, overflow_interval: 1000. Non-finite points that fp16 loss
        scaling explains: any number within the first 50 steps (the scaler calibrating down from
        2^16 or 2^32), then at most one per 1000 steps, plus one (one skipped step per growth of
        the scale); see :mod:`preflight.logs.overflow`. Non-finite gradient norms within that
        pass; a transiently non-finite loss within it warns instead of failing.
    """

    spike_z: float = 6.0
    spike_window: int = 50
    spike_min_history: int = 10
    spike_min_rise: float = 0.10
    spike_recovery: int = 20
    spike_blip_z: float = 12.0
    grad_factor: float = 10.0
    early_frac: float = 0.10
    early_rise: float = 0.50
    warmup_peak_frac: float = 0.90
    lr_decay_tolerance: float = 0.10
    min_progress: float = 0.25
    lr_tolerance: float = 0.20
    overfit_evals: int = 3
    overfit_min_rise: float = 0.02
    underfit_min_drop: float = 0.10
    pref_min_accuracy: float = 0.55
    fast_loss: float = 0.05
    fast_frac: float = 0.20
    min_points: int = 10
    throughput_drop: float = 0.25
    throughput_window: float = 0.25
    max_points: int = 5000
    overflow_calibration_steps: int = 50
    overflow_interval: int = 1000


# ---------------------------------------------------------------------------------------------
# curves


@dataclass
class _Curve:
    """One series' finite points, its first non-finite point, and its downsampled view."""

    name: str
    steps: list[int]
    values: list[float]
    raw_count: int
    bad_count: int = 0
    bad_step: int | None = None
    bad_value: float | None = None
    bad_steps: list[int] = field(default_factory=list)    # steps of the non-finite points
    zero_steps: list[int] = field(default_factory=list)   # train_loss: steps logged as exactly 0.0
    ends_finite: bool = True                               # the last logged point is finite
    last_finite_before_bad: tuple[int, float] | None = None
    stride: int = 1
    sub: list[float] = field(default_factory=list)         # one sampled point per block
    sub_index: list[int] = field(default_factory=list)     # its index into values
    unit: str | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def first_step(self) -> int:
        return self.steps[0]

    @property
    def last_step(self) -> int:
        return self.steps[-1]


def _curve(log: RunLog, name: str, max_points: int) -> _Curve | None:
    series = log.series.get(name)
    if series is None or not series.values:
        return None
    steps, values = series.steps, series.values
    if len(steps) != len(values):
        m = min(len(steps), len(values))
        steps, values = steps[:m], values[:m]
    steps = steps if isinstance(steps, list) else list(steps)  # read only: no copy
    values = values if isinstance(values, list) else list(values)
    curve = _Curve(name, steps, values, len(values), unit=getattr(series, "unit", None))
    total = sum(values)  # a single O(n) pass in C: NaN or inf anywhere makes it non-finite
    if not math.isfinite(total):
        isfinite = math.isfinite
        bad = next(compress(range(len(values)), map(operator.not_, map(isfinite, values))), None)
        if bad is not None:  # (else: only the sum overflowed)
            curve.bad_step, curve.bad_value = steps[bad], values[bad]
            if bad > 0:
                curve.last_finite_before_bad = (steps[bad - 1], values[bad - 1])
            if not any(map(isfinite, values[bad:])):  # the usual case: NaN from there on
                curve.steps, curve.values = steps[:bad], values[:bad]
                curve.bad_steps = steps[bad:]
            else:
                finite = list(map(isfinite, values))
                keep = list(compress(range(len(values)), finite))
                curve.steps = list(map(steps.__getitem__, keep))
                curve.values = list(map(values.__getitem__, keep))
                curve.bad_steps = list(compress(steps, map(operator.not_, finite)))
            curve.ends_finite = isfinite(values[-1])
            curve.bad_count = len(values) - len(curve.values)
    if name == "train_loss" and 0.0 in curve.values:  # one C-level scan
        # A loss of exactly 0.0 is no measurement: DeepSpeed logs it for a step it skipped on an
        # fp16 overflow (often the first 10-30 while the loss scale calibrates), and a batch whose
        # labels are all -100 gives it with some losses. Kept as points, a run of them at the
        # start is a baseline the first real loss "spikes" from, and a step "converged" to 0.
        # They are left out of the curve and reported by logs.nan_loss.
        real = list(map(operator.ne, curve.values, repeat(0.0)))
        curve.zero_steps = list(compress(curve.steps, map(operator.not_, real)))
        curve.steps = list(compress(curve.steps, real))
        curve.values = list(compress(curve.values, real))
    n = len(curve.values)
    b = curve.stride = max(1, -(-n // max(1, max_points)))
    if b == 1:
        curve.sub_index = list(range(n))
        curve.sub = curve.values
    else:  # one point per block, at a hashed offset (Knuth's multiplicative hash)
        curve.sub_index = [min(n - 1, j * b + (j * 2654435761) % b) for j in range(-(-n // b))]
        curve.sub = [curve.values[i] for i in curve.sub_index]
    return curve


def _at(curve: _Curve | None, step: int) -> float | None:
    """The curve's value at ``step``: the last logged point at or before it."""
    if curve is None or not curve.values:
        return None
    i = bisect.bisect_right(curve.steps, step) - 1
    return curve.values[i] if i >= 0 else None


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _sampled_median(xs: list[float], cap: int = 2001) -> float:
    """Median of a (possibly huge) slice, over at most ``cap`` evenly spaced points."""
    step = max(1, -(-len(xs) // cap))
    return _median(xs[::step])


def _fmt(x: float | None) -> str:
    if x is None:
        return "unknown"
    return f"{x:.4g}"


def _num(x: float | None) -> float | None:
    """A JSON-friendly number for evidence (6 significant digits, non-finite as None)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


def _cfg(configured: dict[str, Any] | None, meta: dict[str, Any] | None, key: str) -> float | None:
    for source in (configured, meta):
        if not source or source.get(key) is None:
            continue
        try:
            return float(source[key])
        except (TypeError, ValueError):
            continue
    return None


def _scheduler(configured: dict[str, Any] | None) -> str | None:
    if not configured or not configured.get("lr_scheduler_type"):
        return None
    # "SchedulerType.COSINE" (a stringified enum) reads as "cosine"
    return str(configured["lr_scheduler_type"]).rsplit(".", 1)[-1].strip().lower()


# ---------------------------------------------------------------------------------------------
# rolling baseline and excursions over it


def _rolling(sub: list[float], window: int, min_history: int, *, with_mad: bool) -> tuple[list, list]:
    """Median (and MAD) of ``sub[g-window:g]`` for g = 0..len(sub); None with too little history.

    A sorted window is kept with bisect (insert and delete are memmoves of <= window items), so
    this costs O(len(sub) * window), with len(sub) <= max_points.
    """
    meds: list[float | None] = []
    mads: list[float | None] = []
    win: list[float] = []
    for g in range(len(sub) + 1):
        if len(win) >= min_history:
            k = len(win)
            med = win[k // 2] if k % 2 else (win[k // 2 - 1] + win[k // 2]) / 2
            meds.append(med)
            mads.append(_median(list(map(abs, map(operator.sub, win, repeat(med))))) if with_mad else None)
        else:
            meds.append(None)
            mads.append(None)
        if g < len(sub):
            bisect.insort(win, sub[g])
            if g >= window:
                del win[bisect.bisect_left(win, sub[g - window])]
    return meds, mads


@dataclass
class _Episode:
    index: int            # raw index (into the curve's finite points) of the onset
    group: int            # baseline group of the onset
    upper: float          # band's upper edge at onset
    end: int              # first index back inside the band (len when never)
    recovered: bool | None
    peak: float
    count: int = 1        # excursions merged into this episode


def _first_at_or_below(values: list[float], start: int, limit: float) -> int:
    """First index >= start whose value is <= limit (len when none); chunks grow from 16."""
    n, s, chunk = len(values), start, 16
    while s < n:
        part = values[s : s + chunk]
        if min(part) <= limit:
            return s + next(k for k, v in enumerate(part) if v <= limit)
        s += chunk
        chunk = min(chunk * 2, 65536)
    return n


def _excursions(values: list[float], stride: int, upper: list[float | None],
                recovery: int) -> tuple[list[_Episode], int, bool]:
    """Episodes where a point rises above ``upper`` of its block's baseline.

    Raw index i lies in block g = i // stride and is judged against ``upper[g]``, the baseline
    of the sampled points of blocks 0..g-1 (all strictly before i). Within a block the limit is
    constant, so a block is passed over with one ``max`` over its slice; only blocks holding an
    excursion are looked at point by point. Recovered: the median of the ``recovery`` sampled
    points' worth of values after the onset is back in the band. An excursion that starts
    within that span after an unrecovered episode ended belongs to it (one divergence is one
    episode). Returns the first ``_MAX_EVENTS`` episodes, how many there were, and whether
    scanning stopped at ``_MAX_ONSETS``.
    """
    n = len(values)
    span = recovery * stride
    episodes: list[_Episode] = []
    count = 0
    last: _Episode | None = None
    pos = 0
    for g in range(min(len(upper), -(-n // stride))):
        hi = min((g + 1) * stride, n)
        u = upper[g]
        if u is None or hi <= pos:
            continue
        lo = max(g * stride, pos)
        while lo < hi:
            part = values[lo:hi]
            if max(part) <= u:
                break
            i = lo + next(k for k, v in enumerate(part) if v > u)
            follow = values[i + 1 : i + 1 + span : stride]
            recovered = None if len(follow) < min(3, recovery) else _median(follow) <= u
            end = _first_at_or_below(values, i + 1, u)
            if recovered is False:  # stayed up: the episode lasts until it is back for good
                end = max(end, _first_at_or_below(values, i + span, u))
            peak = max(values[i : min(end, i + 100_000)])
            if last is not None and last.recovered is False and i - last.end <= span:
                last.end, last.count, last.peak = end, last.count + 1, max(last.peak, peak)
            else:
                count += 1
                last = _Episode(i, g, u, end, recovered, peak)
                if len(episodes) < _MAX_EVENTS or recovered is False:
                    episodes.append(last)
                if count >= _MAX_ONSETS:
                    return episodes, count, True
            pos = lo = max(end, i + 1)
    return episodes, count, False


# ---------------------------------------------------------------------------------------------
# the context every diagnosis reads


@dataclass
class _Context:
    log: Any
    t: Thresholds
    configured: dict[str, Any] | None
    meta: dict[str, Any]
    train: _Curve | None
    eval: _Curve | None
    lr: _Curve | None
    grad: _Curve | None
    epoch: _Curve | None
    throughput: _Curve | None
    pref_acc: _Curve | None = None
    pref_margin: _Curve | None = None
    spikes: list[_Episode] = field(default_factory=list)
    spikes_truncated: bool = False
    lr_peak: float = 0.0
    lr_peak_index: int = 0
    spike_count: int = 0
    spike_meds: list = field(default_factory=list)
    spike_mads: list = field(default_factory=list)

    def progress(self) -> tuple[float | None, str]:
        """How much of the planned run the log covers, and from what; None where unknown."""
        last = None
        for c in (self.train, self.lr, self.eval):
            if c is not None and c.values:
                last = max(last or c.last_step, c.last_step)
        if last is None:
            return None, "no steps"
        # max_steps=-1 (TrainingArguments' default: "use num_train_epochs") says nothing: the
        # log's own max_steps (trainer_state.json's, LLaMA-Factory's total_steps) then counts
        max_steps = next((v for v in (_cfg(self.configured, None, "max_steps"),
                                      _cfg(None, self.meta, "max_steps")) if v and v > 0), None)
        if max_steps:
            return last / max_steps, f"step {last} of max_steps={int(max_steps)}"
        epochs = _cfg(self.configured, self.meta, "num_train_epochs")
        if epochs and epochs > 0 and self.epoch is not None and self.epoch.values:
            e = self.epoch.values[-1]
            return e / epochs, f"epoch {_fmt(e)} of num_train_epochs={_fmt(epochs)}"
        return None, "the planned length is unknown; the log is taken as the whole run"

    def enough_train(self) -> bool:
        return self.train is not None and len(self.train) >= self.t.min_points


def _d(id_: str, outcome: Outcome, steps: tuple[int, ...] = ()) -> Diagnosis:
    return Diagnosis(id_, TITLES[id_], outcome, tuple(steps) if outcome.status >= Status.WARN else ())


def _step_range(steps: list[int] | tuple[int, ...]) -> str:
    if not steps:
        return ""
    lo, hi = min(steps), max(steps)
    return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"


# ---------------------------------------------------------------------------------------------
# divergence


def _scaler_skips(c: _Context, curve: _Curve) -> bool:
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


def _zero_losses(c: _Context) -> tuple[str, bool]:
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
            f"({_step_range(zs)}{', through the last logged step' if at_end else ''})")
    note += (", left out of the curve: steps an fp16 engine skipped" if explained
             else ": no loss was computed there")
    return note, not explained


def _nan_loss(c: _Context) -> Diagnosis:
    id_ = "logs.nan_loss"
    curves = [x for x in (c.train, c.eval) if x is not None]
    if not curves:
        return _d(id_, skip("no loss series logged"))
    bad = [x for x in curves if x.bad_step is not None]
    zero_note, zero_bad = _zero_losses(c)
    if not bad:
        observed = f"{' and '.join(x.name for x in curves)} finite at every logged point" + zero_note
        if zero_bad:
            zs = c.train.zero_steps  # type: ignore[union-attr]
            return _d(id_, warn(observed, "finite, non-zero loss", _ZERO_REMEDIATION,
                                zero_points=len(zs), first_zero_step=zs[0], last_zero_step=zs[-1]),
                      (zs[0],))
        return _d(id_, passed(observed, "finite loss"))
    first = min(bad, key=lambda x: x.bad_step)
    step = first.bad_step
    lr = _at(c.lr, step)
    gn = _at(c.grad, step)
    recovered_after = bool(first.steps) and first.steps[-1] > step
    # a few transient non-finite points are what fp16 loss scaling skips: worth a look, not a
    # failure; a loss non-finite at the end of the log, or too often, is
    transient = all(_scaler_skips(c, x) for x in bad)
    observed = (f"{first.name} is {first.bad_value} at step {step} (learning rate there "
                f"{_fmt(lr)}); {first.bad_count} of {first.raw_count} points non-finite"
                + ("; finite again later" if recovered_after else "; never finite again"))
    if not first.ends_finite and recovered_after:
        observed += f", and non-finite again at the last logged step {first.bad_steps[-1]}"
    if first.last_finite_before_bad:
        observed += (f"; last finite {first.name} {_fmt(first.last_finite_before_bad[1])} at step "
                     f"{first.last_finite_before_bad[0]}")
    observed += zero_note
    remediation = (
        ("A few non-finite losses that are finite again, at the start or about once per 1000 "
         "steps, are overflow steps that fp16 dynamic loss scaling skips; if they recur: "
         if transient else "")
        + f"Lower the learning rate (e.g. {_fmt(lr / 2) if lr else 'halve it'}) and clip gradients "
        "(max_grad_norm=1.0); use bf16=True instead of fp16 (fp16 overflows above 65504); add "
        "warmup (warmup_ratio=0.03); check the batch at that step: a batch whose labels are all "
        "-100 (prompt longer than max_length, over-aggressive masking) gives a NaN loss; resume "
        "from the last checkpoint before the step.")
    evidence = {
        "series": first.name, "step": step, "value": str(first.bad_value),
        "learning_rate": _num(lr), "grad_norm": _num(gn),
        "non_finite_points": first.bad_count, "points": first.raw_count,
        "finite_again_later": recovered_after, "ends_finite": first.ends_finite,
        "within_fp16_scaler_budget": transient,
        "last_finite": ({"step": first.last_finite_before_bad[0],
                         "value": _num(first.last_finite_before_bad[1])}
                        if first.last_finite_before_bad else None),
        "others": {x.name: x.bad_step for x in bad if x is not first},
    }
    if transient:
        observed += ("; transient, and no more than fp16 loss scaling skips (any in the first "
                     f"{c.t.overflow_calibration_steps} steps, then about one per "
                     f"{c.t.overflow_interval} steps)")
        return _d(id_, warn(observed, "finite loss at every step", remediation, **evidence), (step,))
    return _d(id_, fail(observed, "finite loss at every step", remediation, **evidence), (step,))


def _find_spikes(c: _Context) -> None:
    tr, t = c.train, c.t
    if tr is None or len(tr) < t.min_points:
        return
    meds, mads = _rolling(tr.sub, t.spike_window, t.spike_min_history, with_mad=True)
    upper: list[float | None] = []
    for med, mad in zip(meds, mads):
        if med is None:
            upper.append(None)
        else:
            upper.append(med + max(t.spike_z * _MAD_TO_SIGMA * mad, t.spike_min_rise * abs(med), 1e-12))
    c.spikes, c.spike_count, c.spikes_truncated = _excursions(tr.values, tr.stride, upper,
                                                              t.spike_recovery)
    c.spike_meds, c.spike_mads = meds, mads


def _spike_record(c: _Context, ep: _Episode) -> dict[str, Any]:
    tr = c.train
    assert tr is not None
    step = tr.steps[ep.index]
    med, mad = c.spike_meds[ep.group], c.spike_mads[ep.group]
    z = (tr.values[ep.index] - med) / (_MAD_TO_SIGMA * mad) if mad else None
    return {
        "step": step, "loss": _num(tr.values[ep.index]), "baseline_median": _num(med),
        "band_upper": _num(ep.upper), "robust_z": _num(z), "peak_loss": _num(ep.peak),
        "recovered": ep.recovered,
        "back_in_band_step": tr.steps[ep.end] if ep.end < len(tr) else None,
        "excursions": ep.count, "learning_rate": _num(_at(c.lr, step)),
        "grad_norm": _num(_at(c.grad, step)),
    }


def _is_blip(c: _Context, ep: _Episode) -> bool:
    """One point above the band, back in it at the next, by less than ``spike_blip_z``."""
    if ep.recovered is not True or ep.count != 1 or ep.end != ep.index + 1:
        return False
    tr = c.train
    mad = c.spike_mads[ep.group]
    if tr is None or not mad:
        return False
    return (tr.values[ep.index] - c.spike_meds[ep.group]) / (_MAD_TO_SIGMA * mad) < c.t.spike_blip_z


def _loss_spike(c: _Context) -> Diagnosis:
    id_ = "logs.loss_spike"
    t, tr = c.t, c.train
    if tr is None:
        return _d(id_, skip("no train_loss series"))
    if len(tr) < t.min_points:
        return _d(id_, skip(f"only {len(tr)} finite train_loss points (need {t.min_points}) for a "
                            "rolling baseline"))
    expected = (f"no point above the rolling median + {t.spike_z} x 1.4826 x MAD of the previous "
                f"{t.spike_window} points (and >= {t.spike_min_rise:.0%} above the median)")
    if not c.spikes:
        return _d(id_, passed(f"no spike over {len(tr)} points (steps {tr.first_step}-{tr.last_step})",
                              expected, stride=tr.stride))
    records = [_spike_record(c, ep) for ep in c.spikes]
    if c.spike_count == len(c.spikes) and c.spike_count < max(20, len(tr) // 100) and all(
            _is_blip(c, ep) for ep in c.spikes):
        top = max(records, key=lambda r: r["robust_z"])
        observed = (f"no spike over {len(tr)} points (steps {tr.first_step}-{tr.last_step}); "
                    f"{len(records)} single point(s) above the band and back in it at the next "
                    f"point ({_step_range([r['step'] for r in records])}; the largest {_fmt(top['loss'])} "
                    f"vs median {_fmt(top['baseline_median'])} at step {top['step']}, robust z "
                    f"{_fmt(top['robust_z'])} < {c.t.spike_blip_z:g}): hard batches, not instability")
        return _d(id_, passed(observed, expected, stride=tr.stride, blips=records))
    steps = tuple(r["step"] for r in records)
    bad = [r for r in records if r["recovered"] is False]
    unknown = [r for r in records if r["recovered"] is None]
    head = records[0] if not bad else bad[0]
    parts = []
    for r in records[:5]:
        state = {True: "recovered", False: "did not recover", None: "at the end of the log"}[r["recovered"]]
        parts.append(f"step {r['step']}: {_fmt(r['loss'])} vs median {_fmt(r['baseline_median'])} "
                     f"(lr {_fmt(r['learning_rate'])}), {state}")
    count = c.spike_count
    more = f" (+{count - 5}{'+' if c.spikes_truncated else ''} more)" if count > 5 else ""
    observed = (f"{count}{'+' if c.spikes_truncated else ''} spike episode(s) in "
                f"{_step_range(steps)}: " + "; ".join(parts) + more)
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
            f"checkpoint before it with a lower learning rate (e.g. {_fmt(lr / 3) if lr else '1/3'}), "
            "max_grad_norm=1.0, warmup (warmup_ratio=0.03), and bf16=True rather than fp16; for "
            "LLM pre-/continued training adam_beta2=0.95 is steadier than 0.999.")
        return _d(id_, fail(observed, expected, remediation, **evidence), steps)
    remediation = (
        "Isolated spikes that recover are usually bad batches: inspect the samples logged at "
        f"step(s) {', '.join(str(s) for s in steps[:5])} (very long, empty or mislabeled ones); "
        "if they recur, lower the learning rate (halve it), set max_grad_norm=1.0 and "
        "warmup_ratio=0.03." + (" A spike at the very end of the log cannot be judged yet: "
                                 "check again later." if unknown else ""))
    return _d(id_, warn(observed, expected, remediation, **evidence), steps)


def _grad_norm_explosion(c: _Context) -> Diagnosis:
    id_ = "logs.grad_norm_explosion"
    t, gn = c.t, c.grad
    if gn is None:
        return _d(id_, skip("no grad_norm series logged (transformers >= 4.38 logs it with the loss)"))
    expected = (f"finite gradient norm, never {t.grad_factor:g}x its rolling median of the previous "
                f"{t.spike_window} points")
    remediation_base = ("Clip gradients (max_grad_norm=1.0, the Trainer default; check it isn't 0 "
                        "or None), lower the learning rate, add warmup (warmup_ratio=0.03), prefer "
                        "bf16=True to fp16, and inspect the batches at the onset.")
    overflow_note = ""
    if gn.bad_step is not None and _scaler_skips(c, gn):
        # what fp16 loss scaling skips: said, and the finite norms are still judged below
        overflow_note = (f"; {gn.bad_count} non-finite point(s) at {_step_range(gn.bad_steps)}, "
                         "finite again: overflow steps that fp16 loss scaling skips (any in the "
                         f"first {t.overflow_calibration_steps} steps, then about one per "
                         f"{t.overflow_interval} steps), which is normal")
    elif gn.bad_step is not None:
        step = gn.bad_step
        lr = _at(c.lr, step)
        persistent = not gn.steps or gn.steps[-1] < step
        observed = (f"grad_norm is {gn.bad_value} at step {step} (learning rate {_fmt(lr)}); "
                    f"{gn.bad_count} of {gn.raw_count} points non-finite"
                    + ("; never finite again" if persistent else "; finite again later"))
        evidence = {"step": step, "value": str(gn.bad_value), "learning_rate": _num(lr),
                    "non_finite_points": gn.bad_count, "persistent": persistent}
        if persistent:
            return _d(id_, fail(observed, expected, remediation_base, **evidence), (step,))
        remediation = ("Occasional inf/NaN gradient norms with fp16 are overflow steps the loss "
                       "scaler skips; many of them mean the scale keeps collapsing. " + remediation_base)
        return _d(id_, warn(observed, expected, remediation, **evidence), (step,))
    if len(gn) < t.min_points:
        return _d(id_, skip(f"only {len(gn)} grad_norm points (need {t.min_points})" + overflow_note))
    meds, _ = _rolling(gn.sub, t.spike_window, t.spike_min_history, with_mad=False)
    upper = [m * t.grad_factor if m is not None and m > 0 else None for m in meds]
    episodes, count, truncated = _excursions(gn.values, gn.stride, upper, t.spike_recovery)
    if not episodes:
        return _d(id_, passed(f"grad_norm within {t.grad_factor:g}x of its rolling median over "
                              f"{len(gn)} points" + overflow_note, expected))
    records = []
    for ep in episodes:
        step = gn.steps[ep.index]
        records.append({
            "step": step, "grad_norm": _num(gn.values[ep.index]),
            "rolling_median": _num(meds[ep.group]), "ratio": _num(gn.values[ep.index] / meds[ep.group]),
            "peak": _num(ep.peak), "sustained": ep.recovered is False, "learning_rate": _num(_at(c.lr, step)),
            "train_loss": _num(_at(c.train, step)),
            "back_below_step": gn.steps[ep.end] if ep.end < len(gn) else None,
        })
    steps = tuple(r["step"] for r in records)
    first = records[0]
    sustained = [r for r in records if r["sustained"]]
    observed = (f"grad_norm exploded at step {first['step']}: {_fmt(first['grad_norm'])}, "
                f"{_fmt(first['ratio'])}x its rolling median {_fmt(first['rolling_median'])} "
                f"(learning rate {_fmt(first['learning_rate'])}); {count}"
                f"{'+' if truncated else ''} episode(s) in {_step_range(steps)}"
                + (f"; sustained from step {sustained[0]['step']}" if sustained else "; each subsided")
                + overflow_note)
    evidence = {"explosions": records, "count": count, "stride": gn.stride, "truncated": truncated}
    if sustained:
        return _d(id_, fail(observed, expected, remediation_base, **evidence), steps)
    return _d(id_, warn(observed, expected, remediation_base, **evidence), steps)


# ---------------------------------------------------------------------------------------------
# learning-rate schedule


def _configured_warmup(c: _Context) -> float | None:
    """Configured warmup in steps-or-ratio terms: > 0 some, 0 none, None not said."""
    ws = _cfg(c.configured, None, "warmup_steps")
    wr = _cfg(c.configured, None, "warmup_ratio")
    if ws is None and wr is None:
        return None
    return max(ws or 0.0, wr or 0.0)


def _no_warmup(c: _Context) -> Diagnosis:
    id_ = "logs.no_warmup"
    t, tr, lr = c.t, c.train, c.lr
    cfg_warmup = _configured_warmup(c)
    if lr is not None and lr.values:
        peak = c.lr_peak
        first = lr.values[0]
        if peak <= 0:
            return _d(id_, skip("the logged learning rate is never above 0"))
        at_peak = first >= t.warmup_peak_frac * peak
        how = (f"first logged learning rate {_fmt(first)} at step {lr.first_step} is "
               f"{first / peak:.0%} of the peak {_fmt(peak)}")
    elif cfg_warmup:
        return _d(id_, skip(f"no learning_rate series logged; the config sets warmup {_fmt(cfg_warmup)}"))
    elif cfg_warmup is not None:
        at_peak = True
        peak = first = None
        how = "no learning_rate logged; the config sets no warmup"
    else:
        return _d(id_, skip("no learning_rate series logged and no configured warmup"))
    expected = (f"a warmup ramp (first logged rate < {t.warmup_peak_frac:.0%} of the peak), or a "
                "stable loss over the first steps")
    if not at_peak:
        return _d(id_, passed(how + " (warmup ramp)", expected))
    if tr is None or not tr.values:
        return _d(id_, skip(how + "; no train_loss to see whether the start was unstable"))
    early_end = tr.first_step + t.early_frac * (tr.last_step - tr.first_step)
    early_spikes = [ep for ep in c.spikes if tr.steps[ep.index] <= early_end and not _is_blip(c, ep)]
    k = bisect.bisect_right(tr.steps, early_end)
    early = tr.values[:k]
    rise_step = None
    if len(early) > 1 and tr.values[0] > 0:
        top = max(early)
        if top > tr.values[0] * (1 + t.early_rise):
            rise_step = tr.steps[early.index(top)]
    if not early_spikes and rise_step is None:
        return _d(id_, passed(how + f"; no warmup, but the loss was stable through step "
                              f"{int(early_end)} (first {t.early_frac:.0%})", expected))
    steps = sorted({tr.steps[ep.index] for ep in early_spikes} | ({rise_step} if rise_step is not None else set()))
    what = []
    if early_spikes:
        what.append("loss spiked at " + ", ".join(f"step {tr.steps[ep.index]}" for ep in early_spikes[:5]))
    if rise_step is not None:
        what.append(f"loss rose to {_fmt(max(early))} at step {rise_step} from {_fmt(tr.values[0])} "
                    f"at step {tr.first_step} (> +{t.early_rise:.0%})")
    note = ("; the config sets warmup but the logged rate shows none: check that the scheduler "
            "in use (e.g. a DeepSpeed 'scheduler' section) applies it" if cfg_warmup else "")
    observed = how + " (no warmup); " + " and ".join(what) + f" in the first {t.early_frac:.0%} of steps" + note
    max_steps = _cfg(c.configured, c.meta, "max_steps")
    example = f" = warmup_steps={max(1, round(0.03 * max_steps))}" if max_steps and max_steps > 0 else ""
    remediation = (f"Add warmup: warmup_ratio=0.03{example} (3 % of the steps; 0.05-0.1 for large "
                   "rates or small batches), or lr_scheduler_type='cosine' with warmup; keep "
                   "max_grad_norm=1.0.")
    evidence = {"first_lr": _num(first), "peak_lr": _num(peak), "configured_warmup": cfg_warmup,
                "early_end_step": int(early_end), "early_spike_steps": [tr.steps[ep.index] for ep in early_spikes],
                "early_rise_step": rise_step}
    return _d(id_, warn(observed, expected, remediation, **evidence), tuple(steps))


def _lr_never_decays(c: _Context) -> Diagnosis:
    id_ = "logs.lr_never_decays"
    t, lr = c.t, c.lr
    if lr is None or not lr.values:
        return _d(id_, skip("no learning_rate series logged"))
    sched = _scheduler(c.configured)
    if sched is None:
        return _d(id_, skip("no configured lr_scheduler_type to compare the logged rate with"))
    if sched in NON_DECAYING:
        return _d(id_, passed(f"lr_scheduler_type={sched} does not decay by design",
                              "a constant rate after warmup"))
    if sched not in DECAYING:
        return _d(id_, skip(f"lr_scheduler_type={sched} is not judged (decays conditionally or late)"))
    progress, how = c.progress()
    if progress is not None and progress < t.min_progress:
        return _d(id_, skip(f"the log covers only {progress:.0%} of the run ({how}); judged from "
                            f"{t.min_progress:.0%}"))
    peak, pi = c.lr_peak, c.lr_peak_index
    low = min(lr.values[pi:])
    expected = f"lr_scheduler_type={sched}: the rate falls >= {t.lr_decay_tolerance:.0%} below its peak"
    if peak <= 0 or low <= peak * (1 - t.lr_decay_tolerance):
        return _d(id_, passed(f"the rate fell from its peak {_fmt(peak)} (step {lr.steps[pi]}) to "
                              f"{_fmt(low)} ({how})", expected))
    observed = (f"the logged rate stays at {low / peak:.0%}+ of its peak {_fmt(peak)} from step "
                f"{lr.steps[pi]} to step {lr.last_step} ({how}) although lr_scheduler_type={sched}")
    remediation = (
        f"The configured {sched} schedule is not being applied. Look for what overrides it: a "
        "DeepSpeed config with a 'scheduler' section (WarmupLR stays constant after warmup; use "
        "WarmupDecayLR / WarmupCosineLR or remove the section so the Trainer's scheduler is used), "
        "a custom optimizers=(optimizer, scheduler) passed to Trainer, or an unknown schedule "
        "length (max_steps=-1 with an IterableDataset: set max_steps).")
    evidence = {"scheduler": sched, "peak_lr": _num(peak), "peak_step": lr.steps[pi],
                "lowest_after_peak": _num(low), "last_lr": _num(lr.values[-1]),
                "progress": _num(progress)}
    return _d(id_, warn(observed, expected, remediation, **evidence), (lr.steps[pi], lr.last_step))


def _lr_mismatch(c: _Context) -> Diagnosis:
    id_ = "logs.lr_mismatch"
    t, lr = c.t, c.lr
    want = _cfg(c.configured, None, "learning_rate")
    if want is None:
        return _d(id_, skip("no configured learning_rate"))
    if lr is None or not lr.values:
        return _d(id_, skip("no learning_rate series logged"))
    if want <= 0:
        return _d(id_, skip(f"configured learning_rate {want} is not positive"))
    peak, pi = c.lr_peak, c.lr_peak_index
    ratio = peak / want
    expected = f"peak logged rate within {t.lr_tolerance:.0%} of the configured {_fmt(want)}"
    if abs(ratio - 1) <= t.lr_tolerance:
        return _d(id_, passed(f"peak logged rate {_fmt(peak)} at step {lr.steps[pi]} (configured "
                              f"{_fmt(want)})", expected))
    if ratio < 1 and pi == len(lr.values) - 1 and len(lr.values) > 1 and lr.values[-2] < peak:
        return _d(id_, skip(f"the rate is still rising at the last logged step {lr.last_step} "
                            f"({_fmt(peak)}): warmup not finished"))
    observed = (f"peak logged learning rate {_fmt(peak)} at step {lr.steps[pi]} is {_fmt(ratio)}x "
                f"the configured {_fmt(want)}")
    remediation = (
        "The optimizer is not using the configured learning_rate. Check a DeepSpeed config's "
        "optimizer.params.lr and scheduler.params.warmup_max_lr (set them to \"auto\" so the "
        "Trainer's value is used), a custom optimizer or optimizers=(...) passed to Trainer, a "
        "launcher or recipe that rescales the rate (e.g. by world size or batch size), or a "
        "typo in the exponent; logged rates are the first parameter group's (LoRA+ or "
        "layer-wise rates differ by design).")
    evidence = {"configured_lr": _num(want), "peak_logged_lr": _num(peak), "peak_step": lr.steps[pi],
                "ratio": _num(ratio)}
    return _d(id_, warn(observed, expected, remediation, **evidence), (lr.steps[pi],))


# ---------------------------------------------------------------------------------------------
# fit


def _train_near(c: _Context, step: int, half_gap: float) -> float | None:
    """Median of the train loss over (step - half_gap, step]; the last point before where none."""
    tr = c.train
    if tr is None or not tr.values:
        return None
    hi = bisect.bisect_right(tr.steps, step)
    lo = bisect.bisect_left(tr.steps, step - half_gap)
    if hi > lo:
        return _sampled_median(tr.values[lo:hi])
    return tr.values[hi - 1] if hi > 0 else None


def _overfitting(c: _Context) -> Diagnosis:
    id_ = "logs.overfitting"
    t, ev = c.t, c.eval
    if ev is None or not ev.values:
        return _d(id_, skip("no eval_loss series: overfitting cannot be seen (see logs.no_eval)"))
    k = t.overfit_evals
    if len(ev) < k + 1:
        return _d(id_, skip(f"only {len(ev)} evaluations; {k + 1} needed to see {k} consecutive rises"))
    steps, vals = ev.steps, ev.values
    every = max(1, len(steps) // 1000)
    gaps = [steps[i + 1] - steps[i] for i in range(0, len(steps) - 1, every)]
    half_gap = _median(gaps) / 2  # train loss is compared over the half-interval before an eval
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
    best = f"best eval_loss {_fmt(vals[best_i])} at step {steps[best_i]}"
    if found is None:
        return _d(id_, passed(f"{len(ev)} evaluations, {best}; no sustained rise", expected))
    onset, end, tr_on, tr_end = found
    epoch = _at(c.epoch, steps[onset])
    train_note = (f"while train loss fell {_fmt(tr_on)} -> {_fmt(tr_end)}" if tr_on is not None
                  else "(no train_loss logged to compare)")
    observed = (f"eval_loss rose {_fmt(vals[onset])} -> {_fmt(vals[end])} over {end - onset} "
                f"consecutive evaluations, steps {steps[onset]}-{steps[end]}"
                + (f" (from epoch {_fmt(epoch)})" if epoch is not None else "")
                + f", {train_note}; {best}")
    best_epoch = _at(c.epoch, steps[best_i])
    epochs_hint = f"num_train_epochs={max(1, math.ceil(best_epoch))}" if best_epoch else "fewer epochs"
    remediation = (
        f"Keep the checkpoint from step {steps[best_i]}: load_best_model_at_end=True, "
        "metric_for_best_model=\"eval_loss\", greater_is_better=False (save_strategy equal to "
        "eval_strategy and save_steps a multiple of eval_steps); stop early with "
        f"EarlyStoppingCallback(early_stopping_patience={k}); train for less ({epochs_hint}); or "
        "regularise: more data, weight_decay=0.01, lora_dropout=0.05-0.1, a lower LoRA rank.")
    evidence = {
        "onset_step": steps[onset], "onset_eval_loss": _num(vals[onset]),
        "rise_end_step": steps[end], "rise_end_eval_loss": _num(vals[end]),
        "rising_steps": steps[onset : end + 1], "best_step": steps[best_i],
        "best_eval_loss": _num(vals[best_i]), "train_loss_at_onset": _num(tr_on),
        "train_loss_at_end": _num(tr_end), "epoch_at_onset": _num(epoch),
    }
    return _d(id_, warn(observed, expected, remediation, **evidence), tuple(steps[onset : end + 1]))


def _underfitting(c: _Context) -> Diagnosis:
    id_ = "logs.underfitting"
    t, tr = c.t, c.train
    if tr is None:
        return _d(id_, skip("no train_loss series"))
    if not c.enough_train():
        return _d(id_, skip(f"only {len(tr)} finite train_loss points (need {t.min_points})"))
    progress, how = c.progress()
    if progress is not None and progress < t.min_progress:
        return _d(id_, skip(f"the log covers only {progress:.0%} of the run ({how})"))
    diverged = [ep for ep in c.spikes if ep.recovered is False]
    if diverged:
        return _d(id_, skip(f"the loss diverged at step {tr.steps[diverged[0].index]} (see "
                            "logs.loss_spike): fit not judged"))
    if c.pref_acc is not None or c.pref_margin is not None:
        return _preference_fit(c, progress)
    sub = tr.sub
    start = _median(sub[: min(5, len(sub))])
    tail = max(1, len(sub) // 10)
    end = _median(sub[-tail:])
    expected = f"train loss falling >= {t.underfit_min_drop:.0%} from its start"
    if start <= 0:
        return _d(id_, skip(f"the train loss starts at {_fmt(start)} (<= 0): relative drop undefined"))
    drop = (start - end) / start
    what = (f"train loss {_fmt(start)} at the start -> {_fmt(end)} at the end "
            f"(steps {tr.first_step}-{tr.last_step}), {drop:+.1%}")
    if drop >= t.underfit_min_drop or end <= t.fast_loss:
        return _d(id_, passed(what, expected))
    observed = what + f": flat (< {t.underfit_min_drop:.0%} drop)"
    remediation = (
        "Raise the learning rate 2-5x (LoRA typically 1e-4 to 3e-4, full fine-tuning 1e-5 to 5e-5), "
        "train longer (num_train_epochs=3, or more max_steps), and give the adapter capacity: "
        "LoRA r=16-64, lora_alpha=2*r, target_modules=\"all-linear\" rather than q_proj/v_proj only. "
        "Check the model is training at all: trainable parameters > 0 (nothing frozen by "
        "mistake), labels not all -100, and the rate not stuck at 0.")
    evidence = {"start_loss": _num(start), "end_loss": _num(end), "relative_drop": _num(drop),
                "first_step": tr.first_step, "last_step": tr.last_step, "progress": _num(progress)}
    return _d(id_, warn(observed, expected, remediation, **evidence), (tr.first_step, tr.last_step))


def _late_mean(curve: _Curve) -> float:
    """Mean of the last quarter of the curve's points (at least 5)."""
    tail = curve.values[-max(5, len(curve) // 4):]
    return math.fsum(tail) / len(tail)


def _preference_fit(c: _Context, progress: float | None) -> Diagnosis:
    """Underfitting of a preference run: judged by rewards/accuracies and rewards/margins (see
    ``Thresholds.pref_min_accuracy``), never by the loss drop."""
    id_ = "logs.underfitting"
    t, acc, margin = c.t, c.pref_acc, c.pref_margin
    acc_late = _late_mean(acc) if acc is not None else None
    margin_late = _late_mean(margin) if margin is not None else None
    parts = []
    if acc is not None and acc_late is not None:
        parts.append(f"rewards/accuracies {_fmt(acc.values[0])} at step {acc.first_step} -> "
                     f"{_fmt(acc_late)} over the last quarter (to step {acc.last_step})")
    if margin is not None and margin_late is not None:
        parts.append(f"rewards/margins {_fmt(margin.values[0])} -> {_fmt(margin_late)}")
    what = "preference run, judged by what it learned rather than the loss drop: " + "; ".join(parts)
    expected = (f"rewards/accuracies above {t.pref_min_accuracy:g} (0.5 is chance) and positive "
                "rewards/margins by the end")
    evidence = {"accuracy_late_mean": _num(acc_late), "margin_late_mean": _num(margin_late),
                "progress": _num(progress)}
    swapped = margin_late is not None and margin_late < 0
    chance = acc_late is not None and acc_late < t.pref_min_accuracy
    if not swapped and not chance:
        return _d(id_, passed(what, expected, **evidence))
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
    return _d(id_, warn(observed, expected, remediation, **evidence), steps)


def _fast_convergence(c: _Context) -> Diagnosis:
    id_ = "logs.fast_convergence"
    t, tr = c.t, c.train
    if tr is None:
        return _d(id_, skip("no train_loss series"))
    if not c.enough_train():
        return _d(id_, skip(f"only {len(tr)} finite train_loss points (need {t.min_points})"))
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
        if sub[g] < t.fast_loss and _median(sub[max(0, g - 4) : g + 1]) < t.fast_loss:
            hit = g
            break
    expected = f"train loss above {t.fast_loss} through {basis} (step {int(early_end)})"
    if hit is None:
        lowest = min(tr.values[: max(1, bisect.bisect_right(tr.steps, early_end))])
        return _d(id_, passed(f"train loss {_fmt(lowest)} at its lowest through {basis}", expected))
    step = tr.steps[idx[hit]]
    frac = (step - tr.first_step) / max(1, tr.last_step - tr.first_step)
    ev_at = _at(c.eval, step)
    observed = (f"train loss below {t.fast_loss} by step {step} ({frac:.0%} of the run, within "
                f"{basis}): {_fmt(sub[hit])}" + (f"; eval_loss {_fmt(ev_at)} there" if ev_at is not None else ""))
    remediation = (
        "A loss near zero this early usually means the model sees the answers: duplicated "
        "samples, or evaluation rows that are also in the training set. Run `preflight data` on "
        "the train and eval files to find duplicates and train/eval overlap; check the labels "
        "don't leak into the inputs (answer in the prompt), that prompt/padding tokens are masked "
        "(labels=-100) so the loss isn't dominated by trivial tokens, and that the data isn't one "
        "template repeated.")
    evidence = {"step": step, "train_loss": _num(sub[hit]), "fraction_of_run": _num(frac),
                "early_end_step": int(early_end), "eval_loss": _num(ev_at)}
    return _d(id_, warn(observed, expected, remediation, **evidence), (step,))


# ---------------------------------------------------------------------------------------------
# missing evidence, throughput


def _no_eval(c: _Context) -> Diagnosis:
    id_ = "logs.no_eval"
    ev = c.eval
    if ev is not None and ev.values:
        return _d(id_, passed(f"{len(ev)} evaluations, steps {ev.first_step}-{ev.last_step}",
                              "eval_loss logged"))
    observed = ("no eval_loss logged" if ev is None or not ev.raw_count
                else f"eval_loss logged {ev.raw_count} times but never finite")
    remediation = (
        "Evaluate during training: pass eval_dataset= to the Trainer (hold out 2-10 % of the data) "
        "and set eval_strategy=\"steps\" (evaluation_strategy before transformers 4.41) with "
        "eval_steps at ~5-10 % of the run (e.g. eval_steps=200), plus per_device_eval_batch_size; "
        "then overfitting can be seen and load_best_model_at_end=True can keep the best checkpoint.")
    return _d(id_, warn(observed, "an eval_loss series", remediation))


def _too_few_points(c: _Context) -> Diagnosis:
    id_ = "logs.too_few_points"
    t, tr = c.t, c.train
    remediation = ("Log more often: logging_steps=10 (or ~1 % of max_steps) and "
                   "logging_first_step=True; make sure the log read is the run's latest "
                   "(trainer_state.json is written at each checkpoint).")
    if tr is None:
        return _d(id_, warn("no train_loss series logged", f">= {t.min_points} train_loss points",
                            remediation, points=0))
    n = tr.raw_count
    if n < t.min_points:
        return _d(id_, warn(f"{n} train_loss point(s) ({_step_range(tr.steps) or 'no finite step'}): "
                            "too few to judge trends, spikes or fit",
                            f">= {t.min_points} train_loss points", remediation, points=n))
    return _d(id_, passed(f"{n} train_loss points", f">= {t.min_points} train_loss points", points=n))


def _throughput_drop(c: _Context) -> Diagnosis:
    id_ = "logs.throughput_drop"
    t, tp = c.t, c.throughput
    if tp is None or not tp.values:
        return _d(id_, skip("no throughput series logged"))
    if len(tp) < t.min_points:
        return _d(id_, skip(f"only {len(tp)} throughput points (need {t.min_points})"))
    n = len(tp)
    w = max(1, int(n * t.throughput_window))
    early = _sampled_median(tp.values[:w])
    late = _sampled_median(tp.values[-w:])
    unit = f" {tp.unit}" if tp.unit else ""
    expected = f"late median within {t.throughput_drop:.0%} of the early median"
    if early <= 0:
        return _d(id_, skip(f"early throughput median {_fmt(early)} is not positive"))
    drop = 1 - late / early
    what = (f"throughput median {_fmt(early)}{unit} over the first {t.throughput_window:.0%} -> "
            f"{_fmt(late)}{unit} over the last {t.throughput_window:.0%} ({-drop:+.0%})")
    if drop <= t.throughput_drop:
        return _d(id_, passed(what, expected))
    # where it fell: the first sampled point whose 5-point running median is below the limit
    limit = early * (1 - t.throughput_drop)
    sub, idx = tp.sub, tp.sub_index
    onset = next((tp.steps[idx[g]] for g in range(len(sub))
                  if sub[g] < limit and _median(sub[max(0, g - 4) : g + 1]) < limit), tp.steps[-w])
    observed = what + f", below {_fmt(limit)}{unit} from about step {onset}"
    remediation = (
        "A sustained slowdown: check the dataloader (dataloader_num_workers=4+, "
        "dataloader_pin_memory=True, data on local disk rather than a network mount, no "
        "streaming stalls), GPU memory fragmentation (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True; "
        "a growing number of cudaMalloc retries), thermal or power throttling (nvidia-smi -q -d "
        "PERFORMANCE, clocks_throttle_reasons), other jobs sharing the GPU, and evaluation or "
        "checkpoint saves counted into the step time.")
    evidence = {"early_median": _num(early), "late_median": _num(late), "drop": _num(drop),
                "onset_step": onset, "unit": tp.unit}
    return _d(id_, warn(observed, expected, remediation, **evidence), (onset,))


# ---------------------------------------------------------------------------------------------


def diagnose(log: RunLog, *, thresholds: Thresholds = Thresholds(),  # frozen: safe as a default
             configured: dict | None = None) -> list[Diagnosis]:
    """Every diagnosis of ``log``, one per id in :data:`IDS`, in that order.

    ``configured`` is what the training config says, where known: ``learning_rate``,
    ``lr_scheduler_type``, ``warmup_steps``/``warmup_ratio``, ``num_train_epochs``,
    ``max_steps``. ``max_steps``/``num_train_epochs`` fall back to ``log.meta``.
    """
    t = thresholds
    meta = getattr(log, "meta", None) or {}
    cap = max(1, t.max_points)
    c = _Context(
        log, t, configured, meta,
        train=_curve(log, "train_loss", cap), eval=_curve(log, "eval_loss", cap),
        lr=_curve(log, "learning_rate", cap), grad=_curve(log, "grad_norm", cap),
        epoch=_curve(log, "epoch", cap), throughput=_curve(log, "throughput", cap),
        pref_acc=_curve(log, "pref_accuracy", cap), pref_margin=_curve(log, "pref_margin", cap),
    )
    if c.pref_acc is not None and not c.pref_acc.values:
        c.pref_acc = None
    if c.pref_margin is not None and not c.pref_margin.values:
        c.pref_margin = None
    if c.lr is not None and c.lr.values:
        c.lr_peak = max(c.lr.values)
        c.lr_peak_index = c.lr.values.index(c.lr_peak)
    _find_spikes(c)
    return [
        _nan_loss(c), _loss_spike(c), _grad_norm_explosion(c), _no_warmup(c),
        _lr_never_decays(c), _lr_mismatch(c), _overfitting(c), _underfitting(c),
        _fast_convergence(c), _no_eval(c), _too_few_points(c), _throughput_drop(c),
    ]
