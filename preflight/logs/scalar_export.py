"""TensorBoard's "Download CSV" of one scalar: ``Wall time,Step,Value``, the metric in the name.

TensorBoard's dashboard saves one chart's data as ``run-<run>-tag-<tag>.csv`` (the tag's ``/``
written ``_``, e.g. ``run-.-tag-train_loss.csv`` for the Trainer's ``train/loss``); W&B's and
other tools' single-series exports have the same three columns. The columns do not say which
metric ``Value`` is: the file name does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

COLUMNS = {"wall time", "step", "value"}


def is_scalar_export(normalised_columns: set[str]) -> bool:
    """``Step`` and ``Value`` (and ``Wall time``) and nothing else."""
    return {"step", "value"} <= normalised_columns <= COLUMNS


def tag_names(path: Path) -> list[str]:
    """The metric names the file name can stand for, most literal first: the tag after
    ``-tag-`` (else the whole stem), URL-decoded, then with its first ``_`` read as the ``/`` it
    was (``train_learning_rate`` -> ``train/learning_rate``)."""
    stem = unquote(path.stem)
    tag = stem.rsplit("-tag-", 1)[1] if "-tag-" in stem else stem
    tag = tag.strip().lower()
    names = [tag]
    if "_" in tag and "/" not in tag:
        names.append(tag.replace("_", "/", 1))
    return names


def run_name(path: Path) -> str | None:
    """The run a Download CSV file is of (``run-<run>-tag-<tag>.csv``), or None for other names:
    the exports of one run's charts, one metric each, belong together."""
    stem = unquote(path.stem)
    if not stem.startswith("run-") or "-tag-" not in stem:
        return None
    return stem[len("run-"):].rsplit("-tag-", 1)[0]
