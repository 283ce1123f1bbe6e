"""What every diagnosis of a run reads: its curves (downsampled for the rolling statistics, see
:mod:`preflight.logs.diagnose`), the rolling baseline and the excursions over it, the run's
configuration, and the :class:`Diagnosis` each returns."""

from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any

from preflight.findings import Outcome, Status, skip
from preflight.logs.thresholds import Thresholds

if TYPE_CHECKING:
    from preflight.logs.series import RunLog


MAX_EVENTS = 50        # spike / explosion episodes kept in evidence
_MAX_ONSETS = 1000     # scanning stops after this many (the count is then reported as N+)
MAD_TO_SIGMA = 1.4826  # MAD * this = standard deviation for normal noise

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


@dataclass(frozen=True)
class Diagnosis:
    id: str
    title: str
    outcome: Outcome
    steps: tuple[int, ...] = ()   # where it happened, for marking the chart; empty for pass/skip


# ---------------------------------------------------------------------------------------------
# curves


@dataclass
class Curve:
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


def read_curve(log: RunLog, name: str, max_points: int) -> Curve | None:
    series = log.series.get(name)
    if series is None or not series.values:
        return None
    steps, values = series.steps, series.values
    if len(steps) != len(values):
        m = min(len(steps), len(values))
        steps, values = steps[:m], values[:m]
    steps = steps if isinstance(steps, list) else list(steps)  # read only: no copy
    values = values if isinstance(values, list) else list(values)
    curve = Curve(name, steps, values, len(values), unit=getattr(series, "unit", None))
    total = sum(values)  # a single O(n) pass in C: NaN or inf anywhere makes it non-finite
    if not math.isfinite(total):
        isfinite = math.isfinite
        bad = next(compress(range(len(values)), map(operator.not_, map(isfinite, values))), None)
        if bad is not None:  # (else: only the sum overflowed)
            curve.bad_step, curve.bad_value = steps[bad], values[bad]
            last = bad - 1
            if name == "train_loss":  # a skipped step's 0.0 is no "last finite loss" (see below)
                while last >= 0 and values[last] == 0.0:
                    last -= 1
            if last >= 0:
                curve.last_finite_before_bad = (steps[last], values[last])
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


def value_at(curve: Curve | None, step: int) -> float | None:
    """The curve's value at ``step``: the last logged point at or before it."""
    if curve is None or not curve.values:
        return None
    i = bisect.bisect_right(curve.steps, step) - 1
    return curve.values[i] if i >= 0 else None


def median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def sampled_median(xs: list[float], cap: int = 2001) -> float:
    """Median of a (possibly huge) slice, over at most ``cap`` evenly spaced points."""
    step = max(1, -(-len(xs) // cap))
    return median(xs[::step])


def fmt(x: float | None) -> str:
    if x is None:
        return "unknown"
    return f"{x:.4g}"


def num(x: float | None) -> float | None:
    """A JSON-friendly number for evidence (6 significant digits, non-finite as None)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


def cfg_value(configured: dict[str, Any] | None, meta: dict[str, Any] | None, key: str) -> float | None:
    for source in (configured, meta):
        if not source or source.get(key) is None:
            continue
        try:
            return float(source[key])
        except (TypeError, ValueError):
            continue
    return None


def scheduler_of(configured: dict[str, Any] | None) -> str | None:
    if not configured or not configured.get("lr_scheduler_type"):
        return None
    # "SchedulerType.COSINE" (a stringified enum) reads as "cosine"
    return str(configured["lr_scheduler_type"]).rsplit(".", 1)[-1].strip().lower()


# ---------------------------------------------------------------------------------------------
# rolling baseline and excursions over it


def rolling(sub: list[float], window: int, min_history: int, *, with_mad: bool) -> tuple[list, list]:
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
            mads.append(median(list(map(abs, map(operator.sub, win, repeat(med))))) if with_mad else None)
        else:
            meds.append(None)
            mads.append(None)
        if g < len(sub):
            bisect.insort(win, sub[g])
            if g >= window:
                del win[bisect.bisect_left(win, sub[g - window])]
    return meds, mads


@dataclass
class Episode:
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


def excursions(values: list[float], stride: int, upper: list[float | None],
                recovery: int) -> tuple[list[Episode], int, bool]:
    """Episodes where a point rises above ``upper`` of its block's baseline.

    Raw index i lies in block g = i // stride and is judged against ``upper[g]``, the baseline
    of the sampled points of blocks 0..g-1 (all strictly before i). Within a block the limit is
    constant, so a block is passed over with one ``max`` over its slice; only blocks holding an
    excursion are looked at point by point. Recovered: the median of the ``recovery`` sampled
    points' worth of values after the onset is back in the band. An excursion that starts
    within that span after an unrecovered episode ended belongs to it (one divergence is one
    episode). Returns the first ``MAX_EVENTS`` episodes, how many there were, and whether
    scanning stopped at ``_MAX_ONSETS``.
    """
    n = len(values)
    span = recovery * stride
    episodes: list[Episode] = []
    count = 0
    last: Episode | None = None
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
            recovered = None if len(follow) < min(3, recovery) else median(follow) <= u
            end = _first_at_or_below(values, i + 1, u)
            if recovered is False:  # stayed up: the episode lasts until it is back for good
                end = max(end, _first_at_or_below(values, i + span, u))
            peak = max(values[i : min(end, i + 100_000)])
            if last is not None and last.recovered is False and i - last.end <= span:
                last.end, last.count, last.peak = end, last.count + 1, max(last.peak, peak)
            else:
                count += 1
                last = Episode(i, g, u, end, recovered, peak)
                if len(episodes) < MAX_EVENTS or recovered is False:
                    episodes.append(last)
                if count >= _MAX_ONSETS:
                    return episodes, count, True
            pos = lo = max(end, i + 1)
    return episodes, count, False


# ---------------------------------------------------------------------------------------------
# the context every diagnosis reads


@dataclass
class Context:
    log: Any
    t: Thresholds
    configured: dict[str, Any] | None
    meta: dict[str, Any]
    train: Curve | None
    eval: Curve | None
    lr: Curve | None
    grad: Curve | None
    epoch: Curve | None
    throughput: Curve | None
    pref_acc: Curve | None = None
    pref_margin: Curve | None = None
    spikes: list[Episode] = field(default_factory=list)
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
        max_steps = next((v for v in (cfg_value(self.configured, None, "max_steps"),
                                      cfg_value(None, self.meta, "max_steps")) if v and v > 0), None)
        if max_steps:
            return last / max_steps, f"step {last} of max_steps={int(max_steps)}"
        epochs = cfg_value(self.configured, self.meta, "num_train_epochs")
        if epochs and epochs > 0 and self.epoch is not None and self.epoch.values:
            e = self.epoch.values[-1]
            return e / epochs, f"epoch {fmt(e)} of num_train_epochs={fmt(epochs)}"
        return None, "the planned length is unknown; the log is taken as the whole run"

    def enough_train(self) -> bool:
        return self.train is not None and len(self.train) >= self.t.min_points

    def without_train(self, id_: str) -> Diagnosis | None:
        """The skip of a diagnosis that needs the train loss, when there is none or too little."""
        if self.train is None:
            return diagnosis(id_, skip("no train_loss series"))
        if not self.enough_train():
            return diagnosis(id_, skip(f"only {len(self.train)} finite train_loss points (need {self.t.min_points})"))
        return None


def diagnosis(id_: str, outcome: Outcome, steps: tuple[int, ...] = ()) -> Diagnosis:
    return Diagnosis(id_, TITLES[id_], outcome, tuple(steps) if outcome.status >= Status.WARN else ())


def step_range(steps: list[int] | tuple[int, ...]) -> str:
    if not steps:
        return ""
    lo, hi = min(steps), max(steps)
    return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"
