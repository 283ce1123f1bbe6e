"""Diagnoses of a run's logged curves: divergence (:mod:`~preflight.logs.divergence`), the
learning-rate schedule (:mod:`~preflight.logs.schedule`), fit (:mod:`~preflight.logs.fit`),
missing evidence and throughput (:mod:`~preflight.logs.evidence`). The curves and rolling
baselines they read are built in :mod:`~preflight.logs.context`; every threshold, with the reason
for its value, is in :mod:`~preflight.logs.thresholds`.

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

from typing import TYPE_CHECKING

from preflight.logs.context import Context, Diagnosis, read_curve
from preflight.logs.divergence import find_spikes, grad_norm_explosion, loss_spike, nan_loss
from preflight.logs.evidence import no_eval, throughput_drop, too_few_points
from preflight.logs.fit import fast_convergence, overfitting, underfitting
from preflight.logs.schedule import lr_mismatch, lr_never_decays, no_warmup
from preflight.logs.thresholds import Thresholds

if TYPE_CHECKING:
    from preflight.logs.series import RunLog

__all__ = ["IDS", "Diagnosis", "Thresholds", "diagnose"]

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
    c = Context(
        log, t, configured, meta,
        train=read_curve(log, "train_loss", cap), eval=read_curve(log, "eval_loss", cap),
        lr=read_curve(log, "learning_rate", cap), grad=read_curve(log, "grad_norm", cap),
        epoch=read_curve(log, "epoch", cap), throughput=read_curve(log, "throughput", cap),
        pref_acc=read_curve(log, "pref_accuracy", cap), pref_margin=read_curve(log, "pref_margin", cap),
    )
    if c.pref_acc is not None and not c.pref_acc.values:
        c.pref_acc = None
    if c.pref_margin is not None and not c.pref_margin.values:
        c.pref_margin = None
    if c.lr is not None and c.lr.values:
        c.lr_peak = max(c.lr.values)
        c.lr_peak_index = c.lr.values.index(c.lr_peak)
    find_spikes(c)
    return [
        nan_loss(c), loss_spike(c), grad_norm_explosion(c), no_warmup(c),
        lr_never_decays(c), lr_mismatch(c), overfitting(c), underfitting(c),
        fast_convergence(c), no_eval(c), too_few_points(c), throughput_drop(c),
    ]
