"""Non-finite points that fp16 dynamic loss scaling explains.

With fp16 (torch ``GradScaler``, DeepSpeed's ``fp16`` loss scaler, Apex) the loss is multiplied
by a scale before the backward pass; a step whose gradients overflow is skipped and the scale
halved, and after a run of clean steps the scale is doubled again. Two kinds of skipped step
follow, both normal, and both can show up in a log as a NaN/inf gradient norm (and with some
engines a NaN/inf or 0.0 loss):

- the calibration at the start: the scale starts high (2^16 in torch and DeepSpeed, 2^32 in
  older DeepSpeed configs) and is halved once per overflow until it fits, so the first few to
  ~30 optimizer steps may be skipped. Any number of them within ``calibration_steps`` (50: the
  32 halvings from 2^32 to 1, with room) is that.
- one step after each growth of the scale: torch doubles it every 2000 clean steps
  (``growth_interval``), DeepSpeed every 1000 (``loss_scale_window``); a doubling that
  overflows is skipped once. So after the calibration, at most one skipped step per
  ``interval`` (1000) steps, plus one. A log samples steps (``logging_steps``), so it shows at
  most that many: the budget is an upper bound at any logging interval.

More than that, or a curve that is non-finite at its last point (never finite again), is not
the scaler at work: the run has diverged or its data or loss is broken.
"""

from __future__ import annotations

import bisect


def within_scaler_budget(bad_steps: list[int], first_step: int, last_step: int, *,
                         calibration_steps: int, interval: int) -> bool:
    """Whether ``bad_steps`` (ascending steps of the non-finite points of a curve logged over
    ``first_step``..``last_step``, finite at its last point) fit what loss scaling skips."""
    if not bad_steps:
        return True
    later = len(bad_steps) - bisect.bisect_right(bad_steps, calibration_steps)
    return later <= 1 + max(0, last_step - first_step) // max(1, interval)
