"""`preflight data` end to end: exit codes, --json, --strict, leakage across splits, --fix (and
the input left alone), exact token counts with a local tokenizer, and fuzzing: arbitrary bytes
in a data file give findings or a clean one-line error, never a traceback."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATA = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def findings_of(out: str) -> dict[str, dict]:
    return {f["id"]: f for f in json.loads(out)["findings"]}


def test_clean_set_with_eval_exits_0(run_cli):
    code, out, err = run_cli("data", str(DATA / "clean_alpaca_en.jsonl"), "--eval", str(DATA / "eval_clean.jsonl"),
                             "--json")
    doc = json.loads(out)
    assert code == 0 and err == ""
    assert doc["schema_version"] == 1 and doc["command"] == "data"
    assert doc["verdict"] == {"status": "pass", "exit_code": 0, "counts": doc["verdict"]["counts"]}
    assert set(doc["splits"]) == {"train", "eval"}
    stats = doc["splits"]["train"]["stats"]
    assert stats["records"] == stats["samples"] == 20
    assert stats["turns"] == {"2": 20} and stats["scripts"]["Latin"] >= 19
    assert doc["tokens"]["exact"] is False and "estimate" in doc["tokens"]["how"]
    assert doc["near_duplicates"]["threshold"] == 0.8


def test_missing_eval_warns_and_strict_fails(run_cli):
    code, out, _ = run_cli("data", str(DATA / "clean_alpaca_zh.jsonl"), "--json")
    no_eval = findings_of(out)["data.no_eval"]
    assert code == 0 and no_eval["status"] == "warn" and no_eval["observed"] == "no --eval split given"
    strict, _, _ = run_cli("data", str(DATA / "clean_alpaca_zh.jsonl"), "--json", "--strict")
    assert strict == 1
    skipped, out, _ = run_cli("data", str(DATA / "clean_alpaca_zh.jsonl"), "--json", "--strict", "--skip", "data.no_eval")
    assert skipped == 0 and "data.no_eval" not in findings_of(out)


def test_only_selects_rules(run_cli):
    code, out, _ = run_cli("data", str(DATA / "alpaca_defects.jsonl"), "--json", "--only", "data.empty_*,data.mojibake")
    assert set(findings_of(out)) == {"data.empty_answer", "data.empty_prompt", "data.mojibake"}
    assert code == 1  # empty answers fail
    code, out, _ = run_cli("data", str(DATA / "alpaca_defects.jsonl"), "--json", "--only", "data.mojibake")
    assert code == 0 and findings_of(out)["data.mojibake"]["status"] == "warn"


def test_failures_exit_1(run_cli):
    code, _, _ = run_cli("data", str(DATA / "sharegpt_defects.json"), "--json")
    assert code == 1


def test_leakage_between_train_and_eval(run_cli):
    code, out, _ = run_cli("data", str(DATA / "clean_alpaca_en.jsonl"), "--eval", str(DATA / "eval_leaky.jsonl"), "--json")
    f = findings_of(out)
    assert code == 1
    assert f["data.leakage"]["status"] == "fail"
    assert [loc["at"] for loc in f["data.leakage"]["evidence"]["locations"]] == [f"{DATA / 'eval_leaky.jsonl'}:1"]
    assert "clean_alpaca_en.jsonl:2" in f["data.leakage"]["observed"]
    assert f["data.near_leakage"]["status"] == "warn"
    assert [loc["at"] for loc in f["data.near_leakage"]["evidence"]["locations"]] == [f"{DATA / 'eval_leaky.jsonl'}:2"]
    assert "clean_alpaca_en.jsonl:6" in f["data.near_leakage"]["observed"]


def test_no_leakage_between_distinct_splits(run_cli):
    _, out, _ = run_cli("data", str(DATA / "clean_alpaca_en.jsonl"), "--eval", str(DATA / "eval_clean.jsonl"), "--json")
    f = findings_of(out)
    assert f["data.leakage"]["status"] == "pass" and f["data.near_leakage"]["status"] == "pass"


def test_too_long_needs_max_tokens(run_cli):
    _, out, _ = run_cli("data", str(DATA / "alpaca_defects.jsonl"), "--json")
    assert findings_of(out)["data.too_long"]["status"] == "skip"
    _, out, _ = run_cli("data", str(DATA / "alpaca_defects.jsonl"), "--json", "--max-tokens", "4096")
    assert findings_of(out)["data.too_long"]["status"] == "pass"


def test_near_dup_threshold_and_switch(run_cli):
    path = str(DATA / "alpaca_defects.jsonl")
    _, out, _ = run_cli("data", path, "--json", "--near-dup-threshold", "0.95")
    assert findings_of(out)["data.near_duplicate"]["status"] == "pass"  # the planted pair is at 0.89
    _, out, _ = run_cli("data", path, "--json", "--no-near-dup")
    assert findings_of(out)["data.near_duplicate"]["status"] == "skip"


def test_fix_writes_a_clean_copy_and_leaves_the_input(run_cli, tmp_path):
    source = DATA / "alpaca_defects.jsonl"
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    out_path = tmp_path / "clean.jsonl"
    code, out, _ = run_cli("data", str(source), "--fix", str(out_path), "--json")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    doc = json.loads(out)
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    # dropped: invalid JSON (2), empty answers (3, 4), missing (5), null (6), wrong type (7), repeat (15)
    assert doc["fix"] == {"path": str(out_path), "written": 13, "dropped": 7}
    assert len(rows) == 13
    assert all(r["output"].strip() == r["output"] and r["output"] for r in rows)
    assert not any("\u0007" in r["output"] for r in rows)  # control characters removed
    again, out2, _ = run_cli("data", str(out_path), "--json", "--skip", "data.no_eval")
    left = {k for k, f in findings_of(out2).items() if f["status"] == "fail"}
    assert left == set()


def test_fix_refuses_to_overwrite_the_input(run_cli, tmp_path):
    copy = tmp_path / "train.jsonl"
    copy.write_bytes((DATA / "clean_alpaca_en.jsonl").read_bytes())
    before = copy.read_bytes()
    code, out, err = run_cli("data", str(copy), "--fix", str(copy))
    assert code == 2 and "overwrite the input" in err and out == ""
    link = tmp_path / "link.jsonl"
    link.symlink_to(copy)
    code, _, err = run_cli("data", str(copy), "--fix", str(link))
    assert code == 2 and copy.read_bytes() == before


def test_fix_as_json_array(run_cli, tmp_path):
    out_path = tmp_path / "clean.json"
    run_cli("data", str(DATA / "train.csv"), "--fix", str(out_path), "--json")
    rows = json.loads(out_path.read_text(encoding="utf-8"))
    assert [r["output"] for r in rows] == ["Red.", "Line one\nline two", "Autumn."]


def test_terminal_report(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")
    code, out, err = run_cli("data", str(DATA / "alpaca_defects.jsonl"), "--max-tokens", "128")
    assert code == 1 and "Traceback" not in err
    assert "tokens per sample (estimated)" in out and "█" in out
    assert "data.empty_answer" in out and "alpaca_defects.jsonl:3" in out
    assert "NOT READY" in out


def test_classification_like_data_shows_labels(run_cli, tmp_path):
    path = tmp_path / "sentiment.jsonl"
    rows = [{"instruction": f"Classify the sentiment of review number {i}: {'great' if i % 3 else 'awful'} product, "
                            f"ordered in week {i}.", "input": "", "output": "positive" if i % 3 else "negative"}
            for i in range(60)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _, out, _ = run_cli("data", str(path), "--json", "--no-near-dup")
    assert json.loads(out)["splits"]["train"]["stats"]["labels"] == {"positive": 40, "negative": 20}


@pytest.mark.parametrize("argv,message", [
    (["missing.jsonl"], "no such file"),
    (["."], "is a folder"),
    (["{train}", "--tokenizer", "nowhere"], "no such tokenizer"),
    (["{train}", "--only", "data.nope"], "unknown check id"),
    (["{info}", "--dataset", "remote"], "is on the Hugging Face Hub (hf_hub_url"),
    (["{info}", "--dataset", "absent"], "Undefined dataset 'absent'"),
    (["{train}", "--dataset", "x"], "TRAIN is not one"),
    (["{train}", "--eval", "missing.jsonl"], "missing.jsonl: no such file"),
    (["{train}", "--fix", "no/such/dir/out.jsonl"], "no such folder"),
])
def test_input_errors_are_one_line_exit_2(run_cli, argv, message):
    argv = [a.format(train=DATA / "clean_alpaca_en.jsonl", info=DATA / "dataset_info.json") for a in argv]
    code, out, err = run_cli("data", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_empty_and_unreadable_files(run_cli, tmp_path):
    for name, content in (("empty.jsonl", b""), ("blank.jsonl", b"\n\n  \n"), ("header.csv", b"instruction,output\n"),
                          ("bytes.jsonl", b"\xff\xfe\x00\x01"), ("object.json", b'{\n "a": 1\n}\n')):
        path = tmp_path / name
        path.write_bytes(content)
        code, _, err = run_cli("data", str(path))
        assert code == 2 and err.startswith("preflight: error: ") and str(path) in err, name


def test_exact_counts_with_a_local_tokenizer(run_cli, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate("name a primary color red write two lines".split())}}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    code, out, _ = run_cli("data", str(DATA / "train.csv"), "--tokenizer", str(tmp_path), "--json",
                           "--max-tokens", "14")
    doc = json.loads(out)
    assert doc["tokens"]["exact"] is True and str(path) in doc["tokens"]["how"]
    # one token a word or "."; + 5 template tokens x 2 turns: "Leave it empty." + "" -> 4 + 0 + 10,
    # "Write two lines." + "Line one\nline two" -> 4 + 4 + 10
    tokens = doc["splits"]["train"]["stats"]["tokens"]
    assert (tokens["min"], tokens["max"]) == (14, 18)
    assert findings_of(out)["data.too_long"]["evidence"]["count"] == 3


# --------------------------------------------------------------------------------------------
# fuzzing: never a traceback


def _run(argv: list[str]) -> tuple[int, str, str]:
    from preflight.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _assert_clean(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 1, 2)
    if code == 2:
        assert err.startswith("preflight: error: ") and len(err.strip().splitlines()) == 1
    else:
        json.loads(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet"]),
       fmt=st.sampled_from(["auto", "alpaca", "sharegpt", "messages", "text"]))
def test_arbitrary_bytes_never_crash(tmp_path_factory, data, suffix, fmt):
    path = tmp_path_factory.mktemp("fuzz") / f"train{suffix}"
    path.write_bytes(data)
    _assert_clean(*_run(["data", str(path), "--json", "--format", fmt, "--max-tokens", "50"]))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["instruction", "input", "output", "history", "system", "messages", "conversations",
                         "role", "content", "from", "value", "text", "tool_calls", "chosen", "rejected",
                         "prompt", "completion", "type", "image_url", "tool_call_id", "tools", "weight",
                         "name"]) | st.text(max_size=5),
        children, max_size=5),
    max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_json_values, min_size=1, max_size=8),
       fmt=st.sampled_from(["auto", "alpaca", "sharegpt", "messages", "text"]))
def test_arbitrary_json_records_never_crash(tmp_path_factory, records, fmt):
    folder = tmp_path_factory.mktemp("fuzzjson")
    path = folder / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    fixed = folder / "fixed.jsonl"
    _assert_clean(*_run(["data", str(path), "--json", "--format", fmt, "--eval", str(path), "--fix", str(fixed)]))


_pairs = st.fixed_dictionaries(
    {"chosen": _json_values, "rejected": _json_values},
    optional={"prompt": _json_values, "instruction": st.text(max_size=20), "input": _json_values,
              "conversations": _json_values, "messages": _json_values})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_pairs, min_size=1, max_size=6))
def test_arbitrary_preference_pairs_never_crash(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("fuzzpairs")
    path = folder / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    _assert_clean(*_run(["data", str(path), "--json", "--max-tokens", "20", "--fix", str(folder / "fixed.jsonl")]))
