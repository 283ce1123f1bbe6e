"""What a training log says, as plain series: one metric over steps, and the run it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

# The canonical series names, in the order a report shows them.
CANONICAL = ("train_loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "throughput",
             "pref_accuracy", "pref_margin")


@dataclass
class Series:
    """One metric over steps.

    ``steps`` ascend (a stable sort of what was logged; where a step was logged twice its last
    value is kept). ``values`` are floats exactly as logged: NaN and inf are kept, since a NaN
    loss is a diagnosis, not a reading error. ``unit`` says what a throughput counts
    (``"samples/s"`` or ``"tokens/s"``); None where the name says it all.
    """

    name: str
    steps: list[int]
    values: list[float]
    unit: str | None = None
    resumed_at: tuple[int, ...] = ()  # where the logged steps went back (a resumed run), if any

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class RunLog:
    """One run's log as read: the file actually read, its format, the series, and run facts.

    ``format`` is one of ``"hf-trainer-state"``, ``"llamafactory-jsonl"``, ``"jsonl"``,
    ``"csv"``, ``"tensorboard"``. ``meta`` holds whatever the file says about the run
    (``max_steps``, ``num_train_epochs``, ``logging_steps``, ``eval_steps``,
    ``best_model_checkpoint``, ``global_step``, ``train_batch_size`` ...) and how it was read
    (``columns``: canonical name -> the key or column it came from; ``other_metrics``;
    ``truncated_last_line``; ``candidates`` when a directory was searched).
    """

    source: str
    format: str
    series: dict[str, Series]
    meta: dict[str, object] = field(default_factory=dict)
