"""The thresholds of ``preflight logs``' diagnoses, each with the reason for its value."""

from __future__ import annotations

from dataclasses import dataclass


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
