"""Second hardening pass of `preflight logs`: TensorBoard runs as trainers write them (resumed,
hparams side files, Lightning tags), folders of several runs, resumed logs whose steps go back,
folders of TensorBoard CSV exports, and preference-optimisation (DPO) logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preflight.errors import InputError
from preflight.logs.readers import read_log


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _writer(path: Path):  # noqa: ANN202
    pytest.importorskip("tensorboard")
    return pytest.importorskip("torch.utils.tensorboard").SummaryWriter(str(path))


# --- tags other than the Trainer's -----------------------------------------------------------------


def test_lightning_and_tutorial_tags_are_read(tmp_path: Path) -> None:
    w = _writer(tmp_path / "lightning_logs" / "version_0")
    for step in range(0, 100, 10):  # self.log("train_loss", on_step=True, on_epoch=True) + val_loss
        w.add_scalar("train_loss_step", 3.0 - step / 100, step)
        w.add_scalar("lr-AdamW", 1e-3, step)
        w.add_scalar("lr-AdamW-momentum", 0.9, step)
        if step % 50 == 40:
            w.add_scalar("train_loss_epoch", 2.9 - step / 100, step)
            w.add_scalar("val_loss", 3.1 - step / 100, step)
    w.close()
    log = read_log(tmp_path / "lightning_logs")
    assert log.series["train_loss"].steps == list(range(0, 100, 10))  # the per-step one
    assert log.meta["columns"] == {"train_loss": "train_loss_step", "eval_loss": "val_loss",
                                   "learning_rate": "lr-AdamW"}
    w = _writer(tmp_path / "tutorial")
    for step in range(3):  # the PyTorch TensorBoard tutorial's tags
        w.add_scalar("Loss/train", 2.0 - step / 10, step)
        w.add_scalar("Loss/val", 2.1 - step / 10, step)
    w.close()
    log = read_log(tmp_path / "tutorial")
    assert set(log.series) == {"train_loss", "eval_loss"}


def test_momentum_is_not_a_learning_rate_nor_a_run_average_a_throughput(tmp_path: Path) -> None:
    w = _writer(tmp_path / "runs" / "x")
    for step in range(1, 4):
        w.add_scalar("train/loss", 2.0 / step, step)
        w.add_scalar("lr-SGD-momentum", 0.9, step)
    # the Trainer's end-of-training summary, as TensorBoardCallback writes it: one point
    w.add_scalar("train/train_samples_per_second", 12.5, 3)
    w.add_scalar("train/train_runtime", 100.0, 3)
    w.close()
    log = read_log(tmp_path / "runs")
    assert set(log.series) == {"train_loss"}
    assert "train/train_samples_per_second" in log.meta["other_metrics"]


def test_wandb_lightning_step_column(tmp_path: Path) -> None:
    rows = [{"_step": i * 3, "trainer/global_step": i, "train/loss_step": 2.0 - i / 10}
            for i in range(5)]
    log = read_log(write(tmp_path / "history.jsonl", jsonl(rows)))
    assert log.meta["step_column"] == "trainer/global_step"
    assert log.series["train_loss"].steps == [0, 1, 2, 3, 4]
