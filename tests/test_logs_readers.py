"""The log readers: every format, directory search, aliases, and the broken files of real life."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from logs_kit import jsonl, write

from preflight.errors import InputError
from preflight.logs.readers import read_log
from preflight.logs.series import RunLog

LOGS = Path(__file__).parent / "fixtures" / "logs"
WHISPER = LOGS / "whisper_small_hi" / "trainer_state.json"
LF_STATE = LOGS / "llamafactory_lora" / "trainer_state.json"
LF_LOG = LOGS / "llamafactory_lora" / "trainer_log.jsonl"


# --- Hugging Face trainer_state.json (real files) ----------------------------------------------


def test_hf_trainer_state_real_whisper_run() -> None:
    log = read_log(WHISPER)
    assert log.format == "hf-trainer-state"
    assert log.source == str(WHISPER)
    assert set(log.series) == {"train_loss", "eval_loss", "learning_rate", "epoch"}
    train, ev = log.series["train_loss"], log.series["eval_loss"]
    assert train.steps[:3] == [100, 200, 300] and train.steps[-1] == 5000
    assert len(train) == 50
    assert train.values[0] == 0.4701 and train.values[-1] == 0.0002
    assert ev.steps == [1000, 2000, 3000, 4000, 5000]
    assert ev.values[0] == pytest.approx(0.30747494101524353)
    assert ev.values[-1] > ev.values[0]  # the real run overfits
    # the summary entry (train_loss averaged over the run, train_runtime) is not a point
    assert 0.06323314253110439 not in train.values
    assert "throughput" not in log.series  # train_samples_per_second is only in the summary
    assert log.meta["summary"]["train_runtime"] == 16800.4503
    assert log.meta["best_model_checkpoint"] == "./whisper-small-colab/checkpoint-4000"
    assert log.meta["max_steps"] == 5000 and log.meta["num_train_epochs"] == 13
    assert log.meta["global_step"] == 5000
    assert "log_history" not in log.meta
    assert "eval_wer" in log.meta["other_metrics"]
    assert "eval_runtime" not in log.meta["other_metrics"]
    # epoch is logged on train and eval entries at the same step: one point per step
    assert len(log.series["epoch"]) == 50


def test_hf_trainer_state_real_llamafactory_run() -> None:
    log = read_log(LF_STATE)
    assert log.format == "hf-trainer-state"
    assert log.series["grad_norm"].values[0] == pytest.approx(1.3140041828155518)
    assert log.series["train_loss"].steps == list(range(1, 10))
    assert log.series["learning_rate"].values[0] == 0.0
    assert all(isinstance(v, float) for v in log.series["learning_rate"].values)
    assert all(type(s) is int for s in log.series["train_loss"].steps)
    assert "eval_loss" not in log.series
    assert log.meta["logging_steps"] == 1 and log.meta["eval_steps"] == 500
    assert log.meta["train_batch_size"] == 1
    assert "stateful_callbacks" not in log.meta
    assert log.meta["summary"]["train_loss"] == pytest.approx(2.766118950313992)


def test_hf_summary_entry_in_the_middle_and_nan_kept(tmp_path: Path) -> None:
    state = json.loads(LF_STATE.read_text())
    hist = state["log_history"]
    summary = hist.pop()
    hist.insert(4, dict(summary))  # an earlier train() call's summary, then more training
    hist[6]["loss"] = float("nan")
    hist[7]["grad_norm"] = float("inf")
    hist[8]["loss"] = None  # null: no point
    p = write(tmp_path / "trainer_state.json", json.dumps(state, indent=2))
    assert "NaN" in p.read_text()  # what json.dumps (and so HF) writes
    log = read_log(p)
    loss = log.series["train_loss"]
    assert loss.steps == [1, 2, 3, 4, 5, 6, 7, 9]
    assert math.isnan(loss.values[5])
    assert log.series["grad_norm"].values[6] == math.inf
    assert len(log.series["epoch"]) == 9  # the summary's epoch is not a point


def test_hf_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    text = LF_STATE.read_text().replace('"loss": 2.7235,', '"loss": 2.7235,,', 1)
    p = write(tmp_path / "trainer_state.json", text)
    bad_line = next(i for i, line in enumerate(text.splitlines(), 1) if ",," in line)
    with pytest.raises(InputError) as e:
        read_log(p)
    assert e.value.source == str(p) and e.value.line == bad_line
    assert str(e.value).startswith(f"{p}:{bad_line}: invalid JSON")


def test_hf_truncated_file_is_an_error(tmp_path: Path) -> None:
    text = LF_STATE.read_text()
    p = write(tmp_path / "trainer_state.json", text[: len(text) // 2])
    with pytest.raises(InputError, match=r"trainer_state\.json:\d+: invalid JSON"):
        read_log(p)


def test_hf_not_a_trainer_state(tmp_path: Path) -> None:
    p = write(tmp_path / "config.json", json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(InputError, match="no log_history.*model_type, hidden_size"):
        read_log(p)


def test_hf_empty_file_and_empty_history_say_so(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    with pytest.raises(InputError, match=r"trainer_state\.json: empty file \(a run that has not saved"):
        read_log(write(p, ""))
    with pytest.raises(InputError, match=r"trainer_state\.json: empty file: only whitespace"):
        read_log(write(p, "  \n"))
    with pytest.raises(InputError, match=r"log_history is empty: nothing logged yet .*logging_steps=500"):
        read_log(write(p, json.dumps({"global_step": 0, "log_history": [], "logging_steps": 500})))
    with pytest.raises(InputError, match=r"no log_history list; its keys: none \(a JSON null\)"):
        read_log(write(p, "null"))
    # negative: one logged point is a log
    log = read_log(write(p, json.dumps({"log_history": [{"step": 1, "loss": 2.0}]})))
    assert log.series["train_loss"].values == [2.0]


def test_hf_no_metric_says_which_keys(tmp_path: Path) -> None:
    state = {"global_step": 2, "log_history": [{"step": 1, "foo": 1.0}, {"step": 2, "bar": 2}]}
    p = write(tmp_path / "trainer_state.json", json.dumps(state))
    with pytest.raises(InputError, match="no recognisable metric.*bar, foo, step"):
        read_log(p)


def test_hf_bad_value_names_the_entry(tmp_path: Path) -> None:
    state = {"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": "high"}]}
    p = write(tmp_path / "trainer_state.json", json.dumps(state))
    with pytest.raises(InputError, match=r"log_history\[1\]: loss is 'high', not a number"):
        read_log(p)


# --- LLaMA-Factory trainer_log.jsonl -----------------------------------------------------------


def test_llamafactory_real_log() -> None:
    log = read_log(LF_LOG)
    assert log.format == "llamafactory-jsonl"
    loss = log.series["train_loss"]
    assert loss.steps == list(range(1, 10))
    assert loss.values[0] == 3.3418 and loss.values[-1] == 2.3993
    assert log.series["learning_rate"].values[1] == 0.0001
    # the last line (end of training) has only epoch: one epoch point at step 9, the last value
    assert log.series["epoch"].steps == list(range(1, 10))
    assert log.meta["max_steps"] == 9 and log.meta["global_step"] == 9
    assert log.meta["elapsed_time"] == "0:05:37"
    assert log.meta["columns"]["learning_rate"] == "lr"
    assert "truncated_last_line" not in log.meta


def test_llamafactory_throughput_eval_and_extras(tmp_path: Path) -> None:
    rows = [
        {"current_steps": 5, "total_steps": 20, "loss": 5.7, "lr": 1e-06, "epoch": 0.16,
         "percentage": 25.0, "elapsed_time": "0:02:03", "remaining_time": "0:06:09",
         "throughput": 13061.0, "total_tokens": 1614784},
        {"current_steps": 10, "total_steps": 20, "eval_loss": 4.2, "epoch": 0.33,
         "percentage": 50.0, "elapsed_time": "0:04:02", "remaining_time": "0:04:02",
         "throughput": 13174.21, "total_tokens": 3189568},
        {"current_steps": 10, "total_steps": 20, "loss": 4.169, "reward": 0.5, "accuracy": 0.4,
         "lr": 2.25e-06, "epoch": 0.33, "percentage": 50.0, "elapsed_time": "0:04:02",
         "remaining_time": "0:04:02", "throughput": 13174.21, "total_tokens": 3189568},
    ]
    log = read_log(write(tmp_path / "trainer_log.jsonl", jsonl(rows)))
    assert log.series["throughput"].unit == "tokens/s"
    assert log.series["throughput"].values == [13061.0, 13174.21]
    assert log.series["eval_loss"].steps == [10] and log.series["eval_loss"].values == [4.2]
    assert log.series["train_loss"].steps == [5, 10]
    assert log.meta["total_tokens"] == 3189568
    assert "reward" in log.meta["other_metrics"]
    # its "accuracy" is the DPO trainer's rewards/accuracies: a series the fit check reads
    assert log.series["pref_accuracy"].steps == [10] and log.meta["columns"]["pref_accuracy"] == "accuracy"


def test_llamafactory_prediction_lines_do_not_set_the_run_length(tmp_path: Path) -> None:
    """A predict/eval run into the same output_dir appends progress lines with its own
    total_steps (batches); the training run's max_steps is its last training line's."""
    from preflight.logs import jsonl_chunks

    train = [{"current_steps": s, "total_steps": 3000, "loss": 2.0 - s / 3000, "lr": 1e-4,
              "epoch": s / 1000, "percentage": s / 30, "elapsed_time": "0:01:00",
              "remaining_time": "0:09:00"} for s in range(5, 3001, 5)]
    predict = [{"current_steps": s, "total_steps": 40, "percentage": s * 2.5, "elapsed_time": "0:00:01",
                "remaining_time": "0:00:09"} for s in range(5, 41, 5)]
    log = read_log(write(tmp_path / "trainer_log.jsonl", jsonl(train + predict)))
    assert log.meta["max_steps"] == 3000 and log.meta["percentage"] == 100.0
    assert log.series["train_loss"].steps[-1] == 3000
    log = read_log(write(tmp_path / "trainer_log.jsonl", jsonl(train)))  # negative: no such lines
    assert log.meta["max_steps"] == 3000
    many = jsonl(train * (jsonl_chunks.MIN_BYTES // len(jsonl(train)) + 1) + predict)
    assert read_log(write(tmp_path / "big" / "trainer_log.jsonl", many)).meta["max_steps"] == 3000


def test_llamafactory_null_eval_loss_is_not_a_point(tmp_path: Path) -> None:
    rows = [{"current_steps": 10, "total_steps": 100, "loss": 1.23, "eval_loss": None,
             "lr": 1e-05, "epoch": 0.1, "percentage": 10.0}]
    log = read_log(write(tmp_path / "trainer_log.jsonl", jsonl(rows)))
    assert "eval_loss" not in log.series
    assert log.series["train_loss"].values == [1.23]


# --- plain JSONL --------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "loss", "ev", "lr", "gn", "tp", "unit"), [
    ("step", "loss", "eval_loss", "learning_rate", "grad_norm", "train_samples_per_second",
     "samples/s"),
    ("global_step", "train_loss", "val_loss", "lr", "train/grad_norm", "samples_per_second",
     "samples/s"),
    ("_step", "train/loss", "eval/loss", "train/learning_rate", "grad_norm",
     "train/tokens_per_second", "tokens/s"),
    ("iteration", "loss", "validation_loss", "lr", "grad_norm", "tokens_per_second", "tokens/s"),
])
def test_jsonl_aliases(tmp_path: Path, step, loss, ev, lr, gn, tp, unit) -> None:
    rows = [{step: s, loss: 2.0 / s, lr: 1e-4, gn: 0.5, tp: 100.0 + s} for s in (1, 2, 3)]
    rows.append({step: 3, ev: 1.5})
    log = read_log(write(tmp_path / "metrics.jsonl", jsonl(rows)))
    assert log.format == "jsonl"
    assert log.meta["step_column"] == step
    assert log.series["train_loss"].steps == [1, 2, 3]
    assert log.series["eval_loss"].values == [1.5]
    assert log.series["learning_rate"].values == [1e-4] * 3
    assert log.series["grad_norm"].values == [0.5] * 3
    assert log.series["throughput"].unit == unit
    assert log.meta["columns"]["train_loss"] == loss


def test_jsonl_wandb_history_prefers_trainer_step(tmp_path: Path) -> None:
    rows = [{"_step": i, "_runtime": 1.0 * i, "train/global_step": 10 * i, "train/loss": 1.0 / i,
             "train/epoch": i / 4} for i in range(1, 5)]
    log = read_log(write(tmp_path / "wandb_history.jsonl", jsonl(rows)))
    assert log.meta["step_column"] == "train/global_step"
    assert log.series["train_loss"].steps == [10, 20, 30, 40]
    assert log.series["epoch"].values == [0.25, 0.5, 0.75, 1.0]


def test_jsonl_nan_and_inf_kept(tmp_path: Path) -> None:
    text = ('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": NaN}\n{"step": 3, "loss": Infinity}\n'
            '{"step": 4, "loss": -Infinity, "grad_norm": NaN}\n')
    log = read_log(write(tmp_path / "m.jsonl", text))
    v = log.series["train_loss"].values
    assert v[0] == 2.5 and math.isnan(v[1]) and v[2] == math.inf and v[3] == -math.inf
    assert math.isnan(log.series["grad_norm"].values[0])


def test_jsonl_truncated_last_line_tolerated(tmp_path: Path) -> None:
    full = LF_LOG.read_text()
    cut = full.rfind('"loss": 2.3993')  # the live run was writing step 9's line
    log = read_log(write(tmp_path / "trainer_log.jsonl", full[: cut + 9]))
    assert log.meta["truncated_last_line"] is True
    assert log.series["train_loss"].steps == list(range(1, 9))


def test_jsonl_truncated_generic_and_only_line(tmp_path: Path) -> None:
    log = read_log(write(tmp_path / "m.jsonl", '{"step": 1, "loss": 1.0}\n{"step": 2, "lo'))
    assert log.meta["truncated_last_line"] is True and log.series["train_loss"].steps == [1]
    with pytest.raises(InputError, match="only a truncated one"):
        read_log(write(tmp_path / "n.jsonl", '{"step": 1, "lo'))


def test_jsonl_broken_line_names_file_and_line(tmp_path: Path) -> None:
    text = '{"step": 1, "loss": 1.0}\n\n{"step": 2, "loss": 0.9}\nStep 3 loss 0.8\n{"step": 4, "loss": 0.7}\n'
    p = write(tmp_path / "m.jsonl", text)
    with pytest.raises(InputError) as e:
        read_log(p)
    assert e.value.line == 4 and str(e.value).startswith(f"{p}:4: not JSON")


def test_jsonl_broken_last_line_with_newline_is_an_error(tmp_path: Path) -> None:
    # a complete (newline-ended) line that is not JSON is corruption, not a run being written
    p = write(tmp_path / "m.jsonl", '{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n')
    with pytest.raises(InputError, match=r"m\.jsonl:2: not JSON"):
        read_log(p)


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", '{"step": 1, "loss": 1.0}\n[2, 0.9]\n')
    with pytest.raises(InputError, match=r"m\.jsonl:2: a JSON list, not an object"):
        read_log(p)


def test_jsonl_two_objects_on_a_line(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", '{"step": 1, "loss": 1.0},{"step": 2, "loss": 0.9}\n')
    with pytest.raises(InputError, match=r"m\.jsonl:1: not JSON"):
        read_log(p)


def test_jsonl_blank_lines_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"step": 1, "loss": 1.0}\r\n\r\n{"step": 2, "loss": 0.5}\r\n')
    assert read_log(p).series["train_loss"].values == [1.0, 0.5]


def test_jsonl_bad_value_names_the_line(tmp_path: Path) -> None:
    text = '{"step": 1, "loss": 1.0}\n{"note": "restart"}\n{"step": 2, "loss": "oops"}\n'
    with pytest.raises(InputError, match=r"m\.jsonl:3: loss is 'oops', not a number"):
        read_log(write(tmp_path / "m.jsonl", text))


def test_jsonl_no_step_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no step column.*loss, time"):
        read_log(write(tmp_path / "m.jsonl", '{"loss": 1.0, "time": 3}\n'))


def test_jsonl_no_metric_lists_keys(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no recognisable metric.*accuracy, step"):
        read_log(write(tmp_path / "m.jsonl", '{"step": 1, "accuracy": 0.5}\n'))


def test_duplicate_steps_keep_last_value_sorted(tmp_path: Path) -> None:
    # a run resumed from checkpoint-20 appends steps 30.. again; out-of-order steps are sorted
    rows = [{"step": s, "loss": v} for s, v in
            [(10, 3.0), (20, 2.0), (30, 1.9), (40, 1.8), (30, 1.5), (40, 1.4), (50, 1.3), (5, 4.0)]]
    log = read_log(write(tmp_path / "m.jsonl", jsonl(rows)))
    s = log.series["train_loss"]
    assert s.steps == [5, 10, 20, 30, 40, 50]
    assert s.values == [4.0, 3.0, 2.0, 1.5, 1.4, 1.3]


def test_float_steps_accepted_when_whole(tmp_path: Path) -> None:
    log = read_log(write(tmp_path / "m.jsonl", '{"step": 1.0, "loss": 1}\n{"step": 2.0, "loss": 2}\n'))
    assert log.series["train_loss"].steps == [1, 2] and log.series["train_loss"].values == [1.0, 2.0]
    with pytest.raises(InputError, match=r"m2\.jsonl:2: step is 2\.5, not a step number"):
        read_log(write(tmp_path / "m2.jsonl", '{"step": 1, "loss": 1}\n{"step": 2.5, "loss": 2}\n'))


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_with_aliases_and_empty_cells(tmp_path: Path) -> None:
    text = ("global_step,train/loss,eval/loss,train/learning_rate,train/grad_norm,tokens_per_second\n"
            "10,2.5,,1e-4,1.1,900\n"
            "20,2.0,2.2,9e-5,nan,910\n"
            "\n"
            "30,inf,,8e-5,0.9,\n")
    log = read_log(write(tmp_path / "metrics.csv", text))
    assert log.format == "csv"
    assert log.series["train_loss"].steps == [10, 20, 30]
    assert log.series["train_loss"].values[2] == math.inf
    assert log.series["eval_loss"].steps == [20] and log.series["eval_loss"].values == [2.2]
    assert math.isnan(log.series["grad_norm"].values[1])
    assert log.series["throughput"].unit == "tokens/s" and log.series["throughput"].steps == [10, 20]


def test_csv_wandb_panel_export(tmp_path: Path) -> None:
    text = ('"Step","run-1 - train/loss","run-1 - train/loss__MIN","run-1 - train/loss__MAX"\n'
            "1,3.0,3.0,3.0\n2,2.5,2.5,2.5\n")
    log = read_log(write(tmp_path / "export.csv", text))
    assert log.series["train_loss"].values == [3.0, 2.5]
    assert log.meta["columns"]["train_loss"] == "run-1 - train/loss"


def test_csv_tensorboard_scalar_download_names_its_metric_in_the_file_name(tmp_path: Path) -> None:
    """TensorBoard's "Download CSV" is Wall time, Step, Value: which metric is in the file name."""
    text = "Wall time,Step,Value\n1700000000.5,10,2.5\n1700000003.1,20,2.25\n"
    for name, canonical in (("run-.-tag-train_loss.csv", "train_loss"),
                            ("run-Jan01_12-00-00_host-tag-train%2Flearning_rate.csv", "learning_rate"),
                            ("run-x-tag-train_grad_norm.csv", "grad_norm"),
                            ("run-x-tag-eval_loss.csv", "eval_loss")):
        log = read_log(write(tmp_path / name, text))
        assert list(log.series) == [canonical], name
        assert log.series[canonical].steps == [10, 20] and log.series[canonical].values == [2.5, 2.25]
    with pytest.raises(InputError, match=r"run-x-tag-epoch_accuracy\.csv: a one-metric export "
                                         r"\(Wall time, Step, Value\).*'epoch_accuracy'.*tag-train_loss"):
        read_log(write(tmp_path / "run-x-tag-epoch_accuracy.csv", text))
    # a Value column beside named metrics is just another column
    log = read_log(write(tmp_path / "run-x-tag-train_loss2.csv", "step,loss,value\n1,2.0,9\n"))
    assert list(log.series) == ["train_loss"] and log.meta["other_metrics"] == ["value"]


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"a\.csv:1: no step column.*time, loss"):
        read_log(write(tmp_path / "a.csv", "time,loss\n1,2\n"))
    with pytest.raises(InputError, match=r"b\.csv:3: loss is 'x', not a number"):
        read_log(write(tmp_path / "b.csv", "step,loss\n1,2\n2,x\n"))
    with pytest.raises(InputError, match=r"c\.csv:3: 3 fields, the header has 2"):
        read_log(write(tmp_path / "c.csv", "step,loss\n1,2\n2,3,4\n"))
    with pytest.raises(InputError, match=r"d\.csv: no recognisable metric.*step, wer"):
        read_log(write(tmp_path / "d.csv", "step,wer\n1,2\n"))
    with pytest.raises(InputError, match=r"e\.csv: empty file"):
        read_log(write(tmp_path / "e.csv", ""))


# --- TensorBoard (optional) ------------------------------------------------------------------------


def test_tensorboard_without_package_says_pip_install(tmp_path: Path, monkeypatch) -> None:
    # import fails as if not installed (its submodules too, should an earlier test have loaded them)
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    p = tmp_path / "runs" / "Nov28" / "events.out.tfevents.1700000000.host.1.0"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\x00" * 16)
    with pytest.raises(InputError) as e:
        read_log(p)
    assert str(e.value).startswith(str(p)) and "pip install tensorboard" in str(e.value)
    # in a directory with nothing else it is still the one chosen, with the same message
    with pytest.raises(InputError, match="pip install tensorboard"):
        read_log(tmp_path)
    # next to a log that can be read without it, that one is read
    write(tmp_path / "metrics.csv", "step,loss\n1,2.0\n")
    log = read_log(tmp_path)
    assert log.format == "csv" and str(p) in log.meta["candidates"]


def test_tensorboard_real_events_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    w = torch_tb.SummaryWriter(str(tmp_path / "runs" / "x"))
    for step in (1, 2, 3):  # the tags Hugging Face's TensorBoardCallback writes
        w.add_scalar("train/loss", 3.0 / step, step)
        w.add_scalar("train/learning_rate", 1e-4, step)
    w.add_scalar("eval/loss", 1.5, 3)
    w.close()
    log = read_log(tmp_path)
    assert log.format == "tensorboard"
    assert log.series["train_loss"].steps == [1, 2, 3]
    assert log.series["eval_loss"].values == [1.5]


# --- directories -----------------------------------------------------------------------------------


def _state(global_step: int) -> str:
    state = json.loads(LF_STATE.read_text())
    state["global_step"] = global_step
    return json.dumps(state)


def test_directory_newest_checkpoint_by_number(tmp_path: Path) -> None:
    for n in (500, 1000, 900):  # "checkpoint-1000" sorts before "checkpoint-500" as text
        write(tmp_path / f"checkpoint-{n}" / "trainer_state.json", _state(n))
    (tmp_path / "checkpoint-2000").mkdir()  # being written: no trainer_state.json yet
    write(tmp_path / "runs" / "x" / "events.out.tfevents.1.host", "")
    log = read_log(tmp_path)
    assert log.source == str(tmp_path / "checkpoint-1000" / "trainer_state.json")
    assert log.meta["global_step"] == 1000
    cands = log.meta["candidates"]
    assert cands[:3] == [str(tmp_path / f"checkpoint-{n}" / "trainer_state.json")
                         for n in (1000, 900, 500)]
    assert cands[-1].endswith("events.out.tfevents.1.host")


def test_directory_preference_order(tmp_path: Path) -> None:
    shutil.copy(LF_LOG, tmp_path / "trainer_log.jsonl")
    write(tmp_path / "metrics.csv", "step,loss\n1,2.0\n")
    write(tmp_path / "notes.csv", "name,value\na,1\n")  # no step column: not a candidate
    assert read_log(tmp_path).format == "llamafactory-jsonl"
    write(tmp_path / "checkpoint-9" / "trainer_state.json", _state(9))
    log = read_log(tmp_path)
    assert log.source.endswith("checkpoint-9/trainer_state.json")
    shutil.copy(LF_STATE, tmp_path / "trainer_state.json")
    log = read_log(tmp_path)
    assert log.source == str(tmp_path / "trainer_state.json")
    assert log.meta["candidates"] == [str(tmp_path / p) for p in (
        "trainer_state.json", "checkpoint-9/trainer_state.json", "trainer_log.jsonl",
        "metrics.csv")]


def test_directory_top_level_state_of_a_previous_run_is_not_read(tmp_path: Path) -> None:
    """The top-level trainer_state.json is written at a run's end, after its last checkpoint: a
    checkpoint more than a minute newer belongs to a later run in the same output_dir."""
    import os
    import time

    top = write(tmp_path / "trainer_state.json", _state(3000))
    ckpt = write(tmp_path / "checkpoint-200" / "trainer_state.json", _state(200))
    now = time.time()
    os.utime(top, (now - 3600, now - 3600))  # the previous run ended an hour ago
    os.utime(ckpt, (now, now))
    log = read_log(tmp_path)
    assert log.source == str(ckpt)
    assert "newer than the top-level one" in log.meta["chosen_because"]
    assert log.meta["candidates"] == [str(ckpt), str(top)]
    os.utime(top, (now - 5, now - 5))  # a copy: times seconds apart, in any order
    log = read_log(tmp_path)
    assert log.source == str(top) and log.meta["chosen_because"] == "the run's final trainer_state.json"


def test_directory_plain_logs_and_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training log found here"):
        read_log(tmp_path)
    write(tmp_path / "b.jsonl", '{"iteration": 1, "loss": 1.0}\n')
    write(tmp_path / "a.jsonl", '{"message": "hello"}\n')
    log = read_log(tmp_path)
    assert log.source == str(tmp_path / "b.jsonl")


def test_missing_path(tmp_path: Path) -> None:
    p = tmp_path / "nope" / "trainer_state.json"
    with pytest.raises(InputError, match="no such file or directory") as e:
        read_log(p)
    assert e.value.source == str(p)


def test_unknown_extension_sniffed(tmp_path: Path) -> None:
    assert read_log(write(tmp_path / "log.txt", jsonl([{"step": 1, "loss": 1.0}]))).format == "jsonl"
    assert read_log(write(tmp_path / "state", LF_STATE.read_text())).format == "hf-trainer-state"
    assert read_log(write(tmp_path / "m.log", "step,loss\n1,1.0\n")).format == "csv"


def test_binary_file(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not a text file"):
        read_log(p)


def test_returns_runlog_dataclass() -> None:
    log = read_log(LF_LOG)
    assert isinstance(log, RunLog)
    for name, s in log.series.items():
        assert s.name == name and len(s.steps) == len(s.values)


def test_json_lines_under_a_json_name(tmp_path: Path) -> None:
    log = read_log(write(tmp_path / "metrics.json", jsonl([{"step": 1, "loss": 1.0},
                                                           {"step": 2, "loss": 0.5}])))
    assert log.format == "jsonl" and log.series["train_loss"].steps == [1, 2]


def test_live_llamafactory_log_newer_than_the_last_checkpoint_wins(tmp_path):
    import os
    import shutil

    from preflight.logs.readers import read_log

    run = tmp_path / "run"
    (run / "checkpoint-5").mkdir(parents=True)
    source = Path(__file__).parent / "fixtures" / "logs" / "llamafactory_lora"
    shutil.copy(source / "trainer_state.json", run / "checkpoint-5" / "trainer_state.json")
    shutil.copy(source / "trainer_log.jsonl", run / "trainer_log.jsonl")
    os.utime(run / "checkpoint-5" / "trainer_state.json", (1_000_000, 1_000_000))
    assert read_log(run).source.endswith("trainer_log.jsonl")
    os.utime(run / "trainer_log.jsonl", (1, 1))
    assert read_log(run).source.endswith("trainer_state.json")


# --- the column extraction against a plain reading, one row at a time ------------------------


def _reference_series(history: list[dict], column: str) -> tuple[list[int], list[float]] | None:
    """What a series means, written as the obvious loop: the rows that log ``column`` (not
    null), their steps as ints and values as floats, ordered by step with the last value of a
    repeated step kept; where the steps go back to s (a resumed run, up to 20 times), the points
    logged before at s or later are dropped: the resumed run trained those steps again."""
    points = [(int(row["step"]), float(row[column])) for row in history if row.get(column) is not None]
    resumes = sum(b[0] < a[0] for a, b in zip(points, points[1:])) <= 20
    by_step: dict[int, float] = {}
    previous = None
    for step, value in points:
        if resumes and previous is not None and step < previous:
            for later in [k for k in by_step if k >= step]:
                del by_step[later]
        by_step[step] = value
        previous = step
    if not by_step:
        return None
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _check_against_reference(tmp_path: Path, history: list[dict]) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 1, "log_history": history}))
    try:
        log = read_log(path)
    except InputError as exc:
        said = "log_history is empty" if not history else "no recognisable metric"
        assert said in str(exc) and "\n" not in str(exc)
        assert all(_reference_series(history, c) is None for c in ("loss", "eval_loss", "learning_rate",
                                                                  "grad_norm", "epoch"))
        return
    for canonical, column in (("train_loss", "loss"), ("eval_loss", "eval_loss"),
                              ("learning_rate", "learning_rate"), ("grad_norm", "grad_norm"),
                              ("epoch", "epoch")):
        expected = _reference_series(history, column)
        if expected is None:
            assert canonical not in log.series
            continue
        got = log.series[canonical]
        assert got.steps == expected[0]
        assert [repr(v) for v in got.values] == [repr(v) for v in expected[1]]  # NaN == NaN here


def test_columns_match_a_row_by_row_reading_seeded(tmp_path: Path) -> None:
    import random

    rng = random.Random(9)
    for _ in range(200):
        history = []
        step = 0
        for _ in range(rng.randint(0, 40)):
            step += rng.choice((0, 0, 1, 1, 1, 5, -3))  # repeats and steps going back (resumed runs)
            row: dict = {"step": step}
            for key in ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch"):
                if rng.random() < 0.6:
                    row[key] = rng.choice((None, 0.0, 1, rng.random(), float("nan"), 2.5e-05))
            history.append(row)
        _check_against_reference(tmp_path, history)


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the project's test extra brings it
    given = None

if given is not None:
    _value = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_infinity=True, allow_nan=True))
    _row = st.fixed_dictionaries(
        {"step": st.integers(0, 30)},
        optional={k: _value for k in ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")},
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(history=st.lists(_row, max_size=30))
    def test_columns_match_a_row_by_row_reading(tmp_path: Path, history: list[dict]) -> None:
        _check_against_reference(tmp_path, history)


# --- orjson from the bytes, or the standard parser: the same answers and the same errors ------

_STATE = json.dumps({"global_step": 3, "log_history": [
    {"epoch": 0.1, "loss": 2.5, "learning_rate": 1e-05, "step": 1},
    {"epoch": 0.2, "loss": 2.25, "learning_rate": 2e-05, "step": 2},
    {"epoch": 0.2, "eval_loss": 2.4, "step": 2},
]}, indent=2)
_BROKEN = {
    "truncated": _STATE[: len(_STATE) // 2].encode(),
    "bom": b"\xef\xbb\xbf" + _STATE.encode(),
    "not utf-8": _STATE.replace('"loss"', '"lo\xffss"').encode("latin-1"),
    "nan loss": _STATE.replace("2.25", "NaN").encode(),
    "string loss": _STATE.replace("2.25", '"2.25x"').encode(),
    "crlf": _STATE.replace("\n", "\r\n").encode(),
    "jsonl under .json": b'{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n',
    "a list": b"[1, 2]",
    "empty": b"",
}


def _outcome(path: Path) -> tuple:
    try:
        log = read_log(path)
    except InputError as exc:
        return ("error", str(exc))
    return ("ok", log.format, {k: (s.steps, [repr(v) for v in s.values]) for k, s in log.series.items()})


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_same_result_with_and_without_orjson(tmp_path: Path, monkeypatch, case: str) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_bytes(_BROKEN[case])
    with_orjson = _outcome(path)
    monkeypatch.setitem(sys.modules, "orjson", None)  # as if the [fast] extra were not installed
    assert _outcome(path) == with_orjson
    if with_orjson[0] == "error":
        assert "\n" not in with_orjson[1] and str(path) in with_orjson[1]
