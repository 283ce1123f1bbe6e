"""A trainer_state.json or LLaMA-Factory trainer_log.jsonl read a slice of entries at a time gives
exactly what the whole-document reader gives, and every file it should not judge itself is left
to that reader."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from preflight.errors import InputError
from preflight.logs import state_chunks
from preflight.logs.readers import read_log


@pytest.fixture
def small_pieces(monkeypatch):
    """Any file, however small, is read in slices of a few entries."""
    monkeypatch.setattr(state_chunks, "MIN_BYTES", 0)
    monkeypatch.setattr(state_chunks, "CHUNK_BYTES", 100)


def _whole_document(monkeypatch, path: Path):
    """What the whole-document reader makes of the file."""
    with monkeypatch.context() as m:
        m.setattr(state_chunks, "read_in_chunks", lambda *a, **k: None)
        return _outcome(path)


def _outcome(path: Path) -> tuple:
    try:
        log = read_log(path)
    except InputError as exc:
        return ("error", str(exc))
    series = {k: (s.steps, [repr(v) for v in s.values], s.unit) for k, s in log.series.items()}
    return ("ok", log.format, series, json.dumps(log.meta, sort_keys=True, default=repr))


def _chunked(path: Path):
    return state_chunks.read_in_chunks(str(path), path.read_bytes())


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


@pytest.mark.parametrize("chunk", [1, 60, 400])
def test_same_log_as_the_whole_document_seeded(tmp_path: Path, monkeypatch, small_pieces, chunk: int) -> None:
    monkeypatch.setattr(state_chunks, "CHUNK_BYTES", chunk)
    rng = random.Random(5 + chunk)
    used = 0
    for i in range(120):
        path = _write(tmp_path / f"s{i}.json", _history(rng), rng)
        expected = _whole_document(monkeypatch, path)
        assert _outcome(path) == expected, path.read_text()
        used += _chunked(path) is not None
    assert used > 60  # the slices were really read, not only left to the whole-document reader


def test_a_clean_log_is_read_in_slices(tmp_path: Path, monkeypatch, small_pieces) -> None:
    history = [{"epoch": s / 10, "grad_norm": 1.0, "learning_rate": 1e-5, "loss": 2.0 - s / 100, "step": s}
               for s in range(1, 200)]
    history.insert(100, {"epoch": 10.0, "eval_loss": 1.5, "step": 100})
    history.append({"epoch": 20.0, "step": 199, "train_loss": 1.9, "train_runtime": 10.0})
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 199, "log_history": history}, indent=2))
    data = path.read_bytes()
    assert len(list(state_chunks._slices(data, *state_chunks._locate(data)))) > 50
    log = _chunked(path)
    assert log is not None
    assert log.series["train_loss"].steps == list(range(1, 200))
    assert log.series["eval_loss"].steps == [100] and log.series["eval_loss"].values == [1.5]
    assert log.series["epoch"].values[99] == 10.0  # the eval entry at step 100 comes last: its value
    assert log.meta["summary"]["train_runtime"] == 10.0
    assert ("ok",) + _outcome(path)[1:] == _whole_document(monkeypatch, path)


@pytest.mark.parametrize(("case", "entry"), [
    ("a bool value", '{"step": 3, "loss": true}'),
    ("a numeric string", '{"step": 3, "loss": "1.5"}'),
    ("a float step", '{"step": 3.0, "loss": 1.0}'),
    ("a null step", '{"step": null, "loss": 1.0}'),
    ("not an object", "[3, 1.0]"),
])
def test_unusual_entries_are_left_to_the_whole_reader(tmp_path: Path, monkeypatch, small_pieces,
                                                 case: str, entry: str) -> None:
    rows = ",\n".join([json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2)] + [entry]
                      + [json.dumps({"step": s, "loss": 1.0 / s}) for s in (4, 5, 6)])
    path = tmp_path / "trainer_state.json"
    path.write_text('{"global_step": 6, "log_history": [\n' + rows + "\n]}")
    assert _chunked(path) is None, case
    assert _outcome(path) == _whole_document(monkeypatch, path)


@pytest.mark.parametrize(("case", "note"), [
    ("the separator inside a string", "x" * 500 + "}, {" + "y" * 500),
    ("a bracket inside a string", "x" * 500 + "}]" + "y" * 500),
    ("a list of objects", ["x" * 500, {"a": 1}, {"b": 2}, "y" * 500]),
])
def test_a_cut_inside_a_value_is_never_trusted(tmp_path: Path, monkeypatch, small_pieces,
                                               case: str, note) -> None:
    """The only separator or closing bracket after the middle of the file is inside an entry's
    value: the slices cannot all parse, so the whole-document reader reads the file."""
    history = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5, "note": note}]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history}))
    assert _chunked(path) is None, case
    assert _outcome(path) == _whole_document(monkeypatch, path)
    assert _outcome(path)[0] == "ok"


@pytest.mark.parametrize(("case", "text"), [
    ("a BOM", '\ufeff{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}]}'),
    ("broken after the array", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}], "x": }'),
    ("a key named twice", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}],'
                          ' "log_history": []}'),
    ("not a top-level key", '{"run": {"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}]}}'),
    ("truncated", '{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}, {"step": 3, "lo'),
])
def test_unusual_documents_are_left_to_the_whole_reader(tmp_path: Path, monkeypatch, small_pieces,
                                                   case: str, text: str) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(text)
    assert _chunked(path) is None, case
    assert _outcome(path) == _whole_document(monkeypatch, path)


def test_the_key_inside_another_value_is_not_the_log(tmp_path: Path, monkeypatch, small_pieces) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text('{"note": {"log_history": [{"step": 9, "loss": 9.0}]}, "log_history": [{"step": 1, "loss": 1.0},'
                    ' {"step": 2, "loss": 0.5}], "after": {"log_history": []}}')
    assert _chunked(path) is None  # the first one found is not the document's: its rest keeps the real one
    assert _outcome(path) == _whole_document(monkeypatch, path)
    path.write_text('{"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}],'
                    ' "after": {"log_history": [{"step": 9, "loss": 9.0}]}}')
    log = _chunked(path)
    assert log is not None and log.series["train_loss"].steps == [1, 2]
    assert _outcome(path) == _whole_document(monkeypatch, path)


def test_small_files_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"step": s, "loss": 1.0} for s in range(1, 50)]}))
    assert _chunked(path) is None  # far below MIN_BYTES
    assert read_log(path).series["train_loss"].steps == list(range(1, 50))


def test_real_logs_and_broken_files_read_alike(tmp_path: Path, monkeypatch, small_pieces) -> None:
    from test_logs_readers import _BROKEN, LF_STATE, WHISPER

    for real in (WHISPER, LF_STATE):
        assert _chunked(real) is not None
        assert _outcome(real) == _whole_document(monkeypatch, real)
    for case, data in _BROKEN.items():
        path = tmp_path / f"{case}.json"
        path.write_bytes(data)
        assert _outcome(path) == _whole_document(monkeypatch, path), case


# --- LLaMA-Factory trainer_log.jsonl ----------------------------------------------------------


@pytest.fixture
def small_line_pieces(monkeypatch):
    from preflight.logs import jsonl_chunks

    monkeypatch.setattr(jsonl_chunks, "MIN_BYTES", 0)
    monkeypatch.setattr(jsonl_chunks, "CHUNK_BYTES", 150)
    return jsonl_chunks


def _lf_lines(rng: random.Random) -> list[str]:
    total, step, lines = 60, 0, []
    for _ in range(rng.randint(1, 40)):
        step += rng.choice((1, 1, 5, 0, -2))
        row: dict = {"current_steps": step, "total_steps": total}
        if rng.random() < 0.8:
            row.update({"loss": rng.choice((rng.random(), None, float("nan"), 2)), "lr": 2e-5,
                        "epoch": round(step / 20, 2)})
            if rng.random() < 0.3:
                row["throughput"] = rng.random() * 1000
        else:
            row["eval_loss"] = rng.choice((rng.random(), None))
        row.update({"percentage": round(step / total * 100, 2), "elapsed_time": "0:01:00",
                    "remaining_time": "0:02:00"})
        lines.append(json.dumps(row))
    return lines


def _whole_file(monkeypatch, chunks, path: Path):
    with monkeypatch.context() as m:
        m.setattr(chunks, "read_in_chunks", lambda *a, **k: None)
        return _outcome(path)


def test_llamafactory_log_same_as_whole_file_seeded(tmp_path: Path, monkeypatch, small_line_pieces) -> None:
    rng = random.Random(17)
    used = 0
    for i in range(150):
        lines = _lf_lines(rng)
        ending = rng.choice(("\n", "\n", "", '\n{"current_steps": 99, "lo'))  # written whole, or mid-line
        path = tmp_path / f"trainer_log{i}.jsonl"
        path.write_text("\n".join(lines) + ending)
        assert _outcome(path) == _whole_file(monkeypatch, small_line_pieces, path), path.read_text()
        used += small_line_pieces.read_in_chunks(str(path), path.read_bytes()) is not None
    assert used > 100


@pytest.mark.parametrize(("case", "text"), [
    ("a blank line", '{"current_steps": 1, "total_steps": 9, "loss": 1.0}\n\n{"current_steps": 2, "total_steps": 9, "loss": 0.5}\n'),
    ("a broken line", '{"current_steps": 1, "total_steps": 9, "loss": 1.0}\n{"current_steps": 2,\n{"current_steps": 3, "total_steps": 9, "loss": 0.5}\n'),
    ("two objects on a line", '{"current_steps": 1, "total_steps": 9, "loss": 1.0}\n{"current_steps": 2, "total_steps": 9}, {"a": 1}\n'),
    ("a line without current_steps", '{"current_steps": 1, "total_steps": 9, "loss": 1.0}\n{"loss": 0.5}\n'),
    ("CRLF", '{"current_steps": 1, "total_steps": 9, "loss": 1.0}\r\n{"current_steps": 2, "total_steps": 9, "loss": 0.5}\r\n'),
    ("generic JSONL", '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n'),
    ("a bool loss", '{"current_steps": 1, "total_steps": 9, "loss": true}\n'),
])
def test_unusual_jsonl_is_left_to_the_whole_file_reader(tmp_path: Path, monkeypatch, small_line_pieces,
                                                        case: str, text: str) -> None:
    path = tmp_path / "trainer_log.jsonl"
    path.write_text(text, newline="")
    assert small_line_pieces.read_in_chunks(str(path), path.read_bytes()) is None, case
    assert _outcome(path) == _whole_file(monkeypatch, small_line_pieces, path)
