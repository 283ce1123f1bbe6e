"""Second hardening pass of `preflight logs`: TensorBoard runs as trainers write them (resumed,
hparams side files, Lightning tags), folders of several runs, resumed logs whose steps go back,
folders of TensorBoard CSV exports, and preference-optimisation (DPO) logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from logs_kit import jsonl, write

from preflight.errors import InputError
from preflight.logs.readers import read_log


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


# --- TensorBoard runs as the Trainer writes them ---------------------------------------------------


def _hf_run(folder: Path, steps: range, offset: float = 0.0, hparams: bool = True) -> Path:
    """A Trainer run's runs/<date>_<host>/: TensorBoardCallback's tags, the add_hparams side file
    and the end-of-training summary."""
    w = _writer(folder)
    w.add_text("args", "{}", 0)
    for s in steps:
        w.add_scalar("train/loss", 2.0 * math.exp(-s / 300) + 0.5 + offset, s)
        w.add_scalar("train/learning_rate", 2e-5 * (1 - s / 1000), s)
        w.add_scalar("train/epoch", s / 500, s)
        if s % 100 == 0:
            w.add_scalar("eval/loss", 2.0 * math.exp(-s / 300) + 0.6, s)
            w.add_scalar("eval/runtime", 3.0, s)
    w.add_scalar("train/train_runtime", 100.0, steps[-1])
    w.add_scalar("train/train_loss", 0.9, steps[-1])
    if hparams:
        w.add_hparams({"lr": 2e-5}, {"hparam/loss": 0.9})  # its own file, in a subfolder
    w.close()
    return folder


def _touch_newest(folder: Path, seconds: float) -> None:
    import os

    for p in folder.rglob("events.out.tfevents.*"):
        os.utime(p, (seconds, seconds))


def test_a_resumed_trainer_run_in_a_second_runs_folder_is_merged_and_said(tmp_path: Path) -> None:
    first = _hf_run(tmp_path / "runs" / "Jan01_10-00-00_host", range(10, 610, 10), offset=0.3)
    second = _hf_run(tmp_path / "runs" / "Jan01_12-00-00_host", range(500, 1010, 10))
    _touch_newest(first, 1_000_000)
    _touch_newest(second, 2_000_000)
    for hp in second.glob("*/events.out.tfevents.*"):  # a copy gave the hparams file the newest time
        import os

        os.utime(hp, (3_000_000, 3_000_000))
    log = read_log(tmp_path)
    tr = log.series["train_loss"]
    assert tr.steps == list(range(10, 1010, 10))
    # the first run's points up to the checkpoint, the resumed run's from it (the old tail dropped)
    assert tr.values[tr.steps.index(490)] == pytest.approx(2.0 * math.exp(-490 / 300) + 0.8)
    assert tr.values[tr.steps.index(500)] == pytest.approx(2.0 * math.exp(-500 / 300) + 0.5)
    assert log.meta["resumed_at"] == [500]
    assert "resumed at step 500" in log.meta["chosen_because"]
    assert "passed over 2 without training scalars" in log.meta["chosen_because"]
    assert "train/train_runtime" in log.meta["other_metrics"]
    assert "train_loss" in log.series and log.series["train_loss"].steps[-1] == 1000


def test_a_run_started_over_is_not_merged_with_the_earlier_one(tmp_path: Path) -> None:
    first = _hf_run(tmp_path / "runs" / "a", range(10, 610, 10), hparams=False)
    second = _hf_run(tmp_path / "runs" / "b", range(10, 310, 10), hparams=False)
    _touch_newest(first, 1_000_000)
    _touch_newest(second, 2_000_000)
    log = read_log(tmp_path)
    assert log.series["train_loss"].steps == list(range(10, 310, 10))
    assert "resumed_at" not in log.meta
    assert log.meta["chosen_because"] == "the newest TensorBoard event file with training scalars"


def test_event_files_cut_off_or_empty(tmp_path: Path) -> None:
    run = _hf_run(tmp_path / "src", range(10, 310, 10), hparams=False)
    (data,) = [p.read_bytes() for p in run.glob("events.out.tfevents.*")]
    live = write(tmp_path / "live" / "events.out.tfevents.1.host.1.0", "")
    live.write_bytes(data[: len(data) // 2 + 7])  # a live run: cut mid-record
    log = read_log(live)
    assert 5 < len(log.series["train_loss"]) < 30
    garbage = write(tmp_path / "bad" / "events.out.tfevents.2.host.1.0", "garbage" * 20)
    with pytest.raises(InputError) as e:
        read_log(garbage)
    assert str(e.value).startswith(str(garbage)) and "no scalar events" in str(e.value)
    with pytest.raises(InputError, match="no scalar events"):
        read_log(tmp_path / "bad")


# --- a folder of several runs --------------------------------------------------------------------


def _state(steps: range) -> str:
    return json.dumps({"global_step": steps[-1], "log_history": [
        {"step": s, "loss": 2.0 - s / 1000, "learning_rate": 1e-5} for s in steps]})


def test_a_folder_of_several_runs_asks_which_one(tmp_path: Path, run_cli) -> None:
    outputs = tmp_path / "outputs"
    write(outputs / "run_a" / "checkpoint-500" / "trainer_state.json", _state(range(10, 510, 10)))
    write(outputs / "run_b" / "trainer_log.jsonl", jsonl(
        [{"current_steps": s, "total_steps": 100, "loss": 1.0} for s in range(1, 20)]))
    _hf_run(outputs / "run_b" / "runs" / "Jan01", range(10, 200, 10), hparams=False)
    code, out, err = run_cli("logs", str(outputs))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "2 training runs here, not one" in err
    assert str(outputs / "run_a") in err and str(outputs / "run_b") in err
    assert "Traceback" not in err


def test_a_folder_holding_one_run_reads_it_and_says_so(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    write(outputs / "run_a" / "checkpoint-500" / "trainer_state.json", _state(range(10, 510, 10)))
    log = read_log(outputs)
    assert log.source == str(outputs / "run_a" / "checkpoint-500" / "trainer_state.json")
    assert log.meta["chosen_because"].startswith(f"the only run folder in {outputs}: ")
    # its LLaMA-Factory log is preferred to its TensorBoard files, from the folder above too
    write(outputs / "run_a" / "trainer_log.jsonl", jsonl(
        [{"current_steps": s, "total_steps": 900, "loss": 1.0} for s in range(510, 530)]))
    _hf_run(outputs / "run_a" / "runs" / "Jan01", range(10, 200, 10), hparams=False)
    assert read_log(outputs).format == "llamafactory-jsonl"
    # Lightning's version_0/, version_1/ are one logger's folders, not an ambiguity
    lightning = tmp_path / "lightning_logs"
    _hf_run(lightning / "version_0", range(10, 200, 10), hparams=False)
    _hf_run(lightning / "version_1", range(10, 100, 10), hparams=False)
    assert read_log(lightning).format == "tensorboard"


# --- preference optimisation (DPO) ------------------------------------------------------------------

# A published DPO run's logged metrics (YeungNLP/firefly-qwen1.5-en-7b's model card: step, loss,
# rewards/accuracies, rewards/margins): healthy, while its loss falls only 9 %.
FIREFLY_DPO = [(100, 0.6128, 0.6572, 0.3914), (200, 0.6066, 0.6913, 0.662),
               (300, 0.5803, 0.7069, 0.876), (400, 0.5624, 0.7169, 0.9575),
               (500, 0.5863, 0.7, 0.8908), (600, 0.5612, 0.7166, 1.0791),
               (700, 0.5741, 0.7234, 1.0742), (800, 0.582, 0.7141, 1.0414),
               (900, 0.5694, 0.7178, 1.2055), (1000, 0.5827, 0.7134, 1.1063),
               (1100, 0.5553, 0.7306, 1.3631)]


def _dpo_state(tmp_path: Path, rows) -> Path:  # noqa: ANN001
    return write(tmp_path / "trainer_state.json", json.dumps({"log_history": [
        {"step": s, "loss": loss, "rewards/accuracies": acc, "rewards/margins": margin,
         "rewards/chosen": -0.1, "rewards/rejected": -0.1 - margin, "logps/chosen": -300.0,
         "learning_rate": 5e-7} for s, loss, acc, margin in rows]}))


def _finding(out: str, id_: str) -> dict:
    return next(f for f in json.loads(out)["findings"] if f["id"] == id_)


def test_a_healthy_dpo_run_is_not_underfitting(tmp_path: Path, run_cli) -> None:
    code, out, _ = run_cli("logs", str(_dpo_state(tmp_path, FIREFLY_DPO)), "--json", "--strict")
    under = _finding(out, "logs.underfitting")
    assert under["status"] == "pass" and "rewards/accuracies 0.6572" in under["observed"]
    assert code == 1  # --strict: only logs.no_eval warns (no evaluation in this log)
    assert [f["id"] for f in json.loads(out)["findings"] if f["status"] == "warn"] == ["logs.no_eval"]


def test_a_dpo_run_at_chance_or_with_swapped_pairs_is_reported(tmp_path: Path, run_cli) -> None:
    import random

    r = random.Random(1)
    flat = [(s, 0.693 + r.gauss(0, 0.005), 0.5 + r.gauss(0, 0.05), r.gauss(0, 0.03))
            for s in range(10, 610, 10)]
    code, out, _ = run_cli("logs", str(_dpo_state(tmp_path, flat)), "--json")
    under = _finding(out, "logs.underfitting")
    assert code == 0 and under["status"] == "warn"
    assert "no more often than chance" in under["observed"]
    swapped = [(s, 0.693 + s / 1000, 0.3, -s / 300) for s in range(10, 610, 10)]
    code, out, _ = run_cli("logs", str(_dpo_state(tmp_path, swapped)), "--json")
    under = _finding(out, "logs.underfitting")
    assert under["status"] == "warn" and "rejected answers score higher" in under["observed"]


# --- resumed runs whose log goes back in steps ----------------------------------------------------


def _lf_resumed(tmp_path: Path) -> Path:
    """LLaMA-Factory appends to trainer_log.jsonl across a resume: steps 10-700, the last 200 of
    them diverging, then the run resumed from checkpoint-500 and logging 510-650 again."""
    rows = []
    for s in range(10, 710, 10):
        loss = 2.0 * math.exp(-s / 300) + 0.5 + (1.5 if s > 500 else 0.0) + 0.01 * (s % 30 == 0)
        rows.append({"current_steps": s, "total_steps": 1000, "loss": loss, "lr": 1e-4, "epoch": s / 1000})
    for s in range(510, 660, 10):
        loss = 2.0 * math.exp(-s / 300) + 0.5 + 0.01 * (s % 30 == 0)
        rows.append({"current_steps": s, "total_steps": 1000, "loss": loss, "lr": 1e-4, "epoch": s / 1000})
    return write(tmp_path / "trainer_log.jsonl", jsonl(rows))


def test_a_resumed_llamafactory_log_is_read_on_its_final_timeline(tmp_path: Path, run_cli) -> None:
    path = _lf_resumed(tmp_path)
    log = read_log(path)
    tr = log.series["train_loss"]
    assert tr.steps == list(range(10, 660, 10))  # the abandoned 660-700 left out
    assert max(tr.values[tr.steps.index(510):]) < 1.0  # the resumed run's values, not the old tail's
    assert log.meta["resumed_at"] == [510]
    code, out, _ = run_cli("logs", str(path), "--json")
    doc = json.loads(out)
    assert doc["resumed_at"] == [510]
    assert _finding(out, "logs.loss_spike")["status"] == "pass"  # no false spike at the seam
    code, out, _ = run_cli("logs", str(path))
    assert "resumed at step 510" in " ".join(out.split())


def test_a_log_that_never_goes_back_is_not_called_resumed(tmp_path: Path, run_cli) -> None:
    rows = [{"current_steps": s, "total_steps": 100, "loss": 2.0 - s / 100, "lr": 1e-4}
            for s in range(1, 60)]
    log = read_log(write(tmp_path / "trainer_log.jsonl", jsonl(rows)))
    assert "resumed_at" not in log.meta
    code, out, _ = run_cli("logs", str(tmp_path / "trainer_log.jsonl"), "--json")
    assert "resumed_at" not in json.loads(out)
    # a generic JSONL is not assumed to be one run's: steps out of order there are sorted
    rows = [{"step": s, "loss": 1.0 + s} for s in (10, 20, 30, 5)]
    assert read_log(write(tmp_path / "m.jsonl", jsonl(rows))).series["train_loss"].steps == [5, 10, 20, 30]


# --- a folder of TensorBoard "Download CSV" exports -------------------------------------------------


def _export(path: Path, points) -> Path:  # noqa: ANN001
    return write(path, "Wall time,Step,Value\n" + "".join(f"{1.7e9 + s},{s},{v}\n" for s, v in points))


def test_one_runs_csv_exports_are_read_together_and_overfitting_seen(tmp_path: Path) -> None:
    from preflight.logs.diagnose import diagnose

    _export(tmp_path / "run-x-tag-train_loss.csv",
            [(s, 2 * math.exp(-s / 200) + 0.1) for s in range(10, 1010, 10)])
    _export(tmp_path / "run-x-tag-eval_loss.csv",
            [(s, 1.0 if s < 500 else 1.0 + (s - 500) / 500) for s in range(100, 1100, 100)])
    _export(tmp_path / "run-x-tag-train_learning_rate.csv", [(s, 1e-4) for s in range(10, 1010, 10)])
    _export(tmp_path / "run-y-tag-train_loss.csv", [(s, 5.0) for s in range(10, 100, 10)])  # another run
    log = read_log(tmp_path)
    assert set(log.series) == {"train_loss", "eval_loss", "learning_rate"}
    assert log.series["train_loss"].steps[-1] == 1000 and log.series["train_loss"].values[0] < 5
    assert len(log.meta["merged_files"]) == 3
    assert "run 'x'" in log.meta["chosen_because"]
    overfit = next(d for d in diagnose(log) if d.id == "logs.overfitting")
    assert overfit.outcome.status.label == "warn"


def test_exports_of_different_runs_are_not_merged(tmp_path: Path) -> None:
    _export(tmp_path / "run-a-tag-train_loss.csv", [(s, 2.0) for s in range(10, 100, 10)])
    _export(tmp_path / "run-b-tag-eval_loss.csv", [(s, 2.0) for s in range(10, 100, 10)])
    log = read_log(tmp_path)
    assert set(log.series) == {"train_loss"} and "merged_files" not in log.meta
