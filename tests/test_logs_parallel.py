"""A trainer_state.json read by several forked processes gives exactly what one process gives,
and every file it should not judge itself is left to the one-process reader (real forks)."""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from pathlib import Path

import pytest

from preflight.errors import InputError
from preflight.logs import parallel_state
from preflight.logs.readers import read_log

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read in parallel on Linux only")


@pytest.fixture
def small_pieces(monkeypatch):
    """Any file, however small, is cut into up to 4 slices, each parsed in its own process."""
    monkeypatch.setattr(parallel_state, "MIN_BYTES", 0)
    monkeypatch.setattr(parallel_state, "_PIECE_BYTES", 1)


def _one_process(monkeypatch, path: Path):
    with monkeypatch.context() as m:
        m.setattr(parallel_state, "read_parallel", lambda *a, **k: None)
        return _outcome(path)


def _outcome(path: Path) -> tuple:
    try:
        log = read_log(path)
    except InputError as exc:
        return ("error", str(exc))
    series = {k: (s.steps, [repr(v) for v in s.values], s.unit) for k, s in log.series.items()}
    return ("ok", log.format, series, json.dumps(log.meta, sort_keys=True, default=repr))


def _parallel(path: Path, workers: int = 4):
    return parallel_state.read_parallel(str(path), path.read_bytes(), workers=workers)


def _history(rng: random.Random) -> list[dict]:
    """A run's log_history with what real ones hold: train points, evals at the step of a train
    point, throughput, resumed runs going back, NaN, nulls, aliases, the end-of-run summary."""
    rows: list[dict] = []
    step = 0
    lr_key = rng.choice(("learning_rate", "lr"))
    for _ in range(rng.randint(1, 60)):
        step += rng.choice((1, 1, 1, 5, 0, -3))
        row: dict = {"epoch": round(step / 50, 3), "step": step}
        kind = rng.random()
        if kind < 0.7:
            row.update({"loss": rng.choice((rng.random(), 1, float("nan"), None)),
                        lr_key: rng.choice((2e-5, 0.0, rng.random() / 1e4)),
                        "grad_norm": rng.random() * 3})
            if rng.random() < 0.2:
                row["train_tokens_per_second"] = rng.randint(100, 5000)
        elif kind < 0.9:
            row.update({"eval_loss": rng.random(), "eval_runtime": 1.5, "eval_samples_per_second": 30.0})
        elif kind < 0.93:
            row["Loss"] = rng.random()  # two spellings of one metric: the reader picks one, always
        elif kind < 0.95:
            del row["step"]  # an entry without a step
            row["loss"] = 1.0
        else:
            row.update({"train_runtime": 100.0, "train_loss": 1.2, "total_flos": 1e15})
        rows.append(row)
    return rows


def _write(path: Path, history: list[dict], rng: random.Random) -> Path:
    state = {"best_metric": None, "epoch": 3.0, "global_step": 60, "log_history": history,
             "max_steps": 60, "stateful_callbacks": {"TrainerControl": {"args": {"should_save": True}}}}
    path.write_text(json.dumps(state, indent=rng.choice((None, 2)), sort_keys=rng.random() < 0.5))
    return path


def test_same_log_as_one_process_seeded(tmp_path: Path, monkeypatch, small_pieces) -> None:
    rng = random.Random(5)
    used = 0
    for i in range(120):
        path = _write(tmp_path / f"s{i}.json", _history(rng), rng)
        expected = _one_process(monkeypatch, path)
        assert _outcome(path) == expected, path.read_text()
        used += _parallel(path) is not None
    assert used > 60  # the parallel path really ran, not only its fallback


def test_a_clean_log_is_read_in_slices(tmp_path: Path, monkeypatch, small_pieces) -> None:
    history = [{"epoch": s / 10, "grad_norm": 1.0, "learning_rate": 1e-5, "loss": 2.0 - s / 100, "step": s}
               for s in range(1, 200)]
    history.insert(100, {"epoch": 10.0, "eval_loss": 1.5, "step": 100})
    history.append({"epoch": 20.0, "step": 199, "train_loss": 1.9, "train_runtime": 10.0})
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 199, "log_history": history}, indent=2))
    cut = parallel_state._cut(path.read_bytes(), 4)
    assert cut is not None and len(cut[0]) == 4
    log = _parallel(path)
    assert log is not None
    assert log.series["train_loss"].steps == list(range(1, 200))
    assert log.series["eval_loss"].steps == [100] and log.series["eval_loss"].values == [1.5]
    assert log.series["epoch"].values[99] == 10.0  # the eval entry at step 100 comes last: its value
    assert log.meta["summary"]["train_runtime"] == 10.0
    assert ("ok",) + _outcome(path)[1:] == _one_process(monkeypatch, path)


@pytest.mark.parametrize(("case", "entry"), [
    ("a bool value", '{"step": 3, "loss": true}'),
    ("a numeric string", '{"step": 3, "loss": "1.5"}'),
    ("a float step", '{"step": 3.0, "loss": 1.0}'),
    ("a null step", '{"step": null, "loss": 1.0}'),
    ("not an object", "[3, 1.0]"),
])
def test_unusual_entries_are_left_to_one_process(tmp_path: Path, monkeypatch, small_pieces,
                                                 case: str, entry: str) -> None:
    rows = ",\n".join([json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2)] + [entry]
                      + [json.dumps({"step": s, "loss": 1.0 / s}) for s in (4, 5, 6)])
    path = tmp_path / "trainer_state.json"
    path.write_text('{"global_step": 6, "log_history": [\n' + rows + "\n]}")
    assert _parallel(path) is None, case
    assert _outcome(path) == _one_process(monkeypatch, path)


@pytest.mark.parametrize(("case", "note"), [
    ("the separator inside a string", "x" * 500 + "}, {" + "y" * 500),
    ("a bracket inside a string", "x" * 500 + "}]" + "y" * 500),
    ("a list of objects", ["x" * 500, {"a": 1}, {"b": 2}, "y" * 500]),
])
def test_a_cut_inside_a_value_is_never_trusted(tmp_path: Path, monkeypatch, small_pieces,
                                               case: str, note) -> None:
    """The only separator or closing bracket after the middle of the file is inside an entry's
    value: the slices cannot all parse, so one process reads the file, with the same result."""
    history = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5, "note": note}]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history}))
    assert _parallel(path, workers=2) is None, case
    assert _outcome(path) == _one_process(monkeypatch, path)
    assert _outcome(path)[0] == "ok"


@pytest.mark.parametrize(("case", "text"), [
    ("log_history named twice", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}],'
                                ' "note": {"log_history": []}}'),
    ("a BOM", '\ufeff{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}]}'),
    ("broken after the array", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}], "x": }'),
    ("not a top-level key", '{"run": {"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}]}}'),
    ("truncated", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}, {"step": 3, "lo'),
])
def test_unusual_documents_are_left_to_one_process(tmp_path: Path, monkeypatch, small_pieces,
                                                   case: str, text: str) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(text)
    assert _parallel(path) is None, case
    assert _outcome(path) == _one_process(monkeypatch, path)


def test_a_child_that_dies_leaves_the_file_to_one_process(tmp_path: Path, monkeypatch, small_pieces) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"step": s, "loss": 1.0} for s in range(1, 50)]}))
    assert _parallel(path) is not None
    monkeypatch.setattr(parallel_state, "_columns", lambda rows, piece: os._exit(7))
    assert _parallel(path) is None
    assert read_log(path).series["train_loss"].steps == list(range(1, 50))


def test_no_fork_beside_other_threads_and_none_for_small_files(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"step": s, "loss": 1.0} for s in range(1, 50)]}))
    assert _parallel(path) is None  # far below MIN_BYTES
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert parallel_state.workers_available() == 1
    finally:
        stop.set()
        worker.join()


def test_real_logs_and_broken_files_read_alike(tmp_path: Path, monkeypatch, small_pieces) -> None:
    from test_logs_readers import _BROKEN, LF_STATE, WHISPER

    for real in (WHISPER, LF_STATE):
        assert _parallel(real) is not None
        assert _outcome(real) == _one_process(monkeypatch, real)
    for case, data in _BROKEN.items():
        path = tmp_path / f"{case}.json"
        path.write_bytes(data)
        assert _outcome(path) == _one_process(monkeypatch, path), case
