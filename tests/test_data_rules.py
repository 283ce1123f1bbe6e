"""`preflight data` rules on datasets written for the tests (tests/fixtures/data/): English and
Chinese, alpaca, ShareGPT and messages formats, with defects planted at known lines. Each rule
has a positive case (the planted line is named) and a negative one (the clean sets pass it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "fixtures" / "data"
CLEAN = ("clean_alpaca_en.jsonl", "clean_alpaca_zh.jsonl", "clean_sharegpt.json", "clean_messages.jsonl")


def check(run_cli, *args: str) -> tuple[int, dict, dict]:
    code, out, err = run_cli("data", *args, "--json")
    assert "Traceback" not in err
    doc = json.loads(out)
    return code, doc, {f["id"]: f for f in doc["findings"]}


def lines_of(finding: dict) -> list[str]:
    return [loc["at"] for loc in finding["evidence"].get("locations", [])]


@pytest.fixture(scope="module")
def alpaca(request):  # noqa: ANN001, ANN201
    import contextlib
    import io

    from preflight.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["data", str(DATA / "alpaca_defects.jsonl"), "--json", "--max-tokens", "128"])
    doc = json.loads(out.getvalue())
    return code, {f["id"]: f for f in doc["findings"]}


ALPACA_PLANTED = {
    "data.invalid_json": [2],
    "data.empty_answer": [3, 4],
    "data.missing_key": [5],
    "data.null_value": [6],
    "data.wrong_type": [7],
    "data.empty_prompt": [8],
    "data.unexpected_key": [9],
    "data.mojibake": [10, 18],
    "data.replacement_char": [11, 19],
    "data.control_chars": [12],
    "data.html_remnants": [13],
    "data.repetition": [14],
    "data.duplicate": [15],
    "data.near_duplicate": [17],
    "data.too_long": [20],
}


@pytest.mark.parametrize("rule_id", sorted(ALPACA_PLANTED))
def test_alpaca_defects_are_found_at_their_lines(alpaca, rule_id):
    code, findings = alpaca
    f = findings[rule_id]
    name = "alpaca_defects.jsonl"
    assert [Path(at.rsplit(":", 1)[0]).name + ":" + at.rsplit(":", 1)[1] for at in lines_of(f)] == [
        f"{name}:{n}" for n in ALPACA_PLANTED[rule_id]]
    assert f["evidence"]["count"] == len(ALPACA_PLANTED[rule_id])
    assert f["status"] in ("warn", "fail") and f["remediation"]
    assert code == 1


def test_alpaca_details_say_what_is_wrong(alpaca):
    _, findings = alpaca
    assert "'â€™' reads as '’' (UTF-8 decoded as cp1252)" in findings["data.mojibake"]["observed"]
    assert "我很好" in findings["data.mojibake"]["observed"] and "GBK" in findings["data.mojibake"]["observed"]
    assert "'锟斤拷'" in findings["data.replacement_char"]["observed"]
    assert "same as" in findings["data.duplicate"]["observed"] and "alpaca_defects.jsonl:1" in findings["data.duplicate"]["observed"]
    assert "Jaccard" in findings["data.near_duplicate"]["observed"]
    assert "cuts the answer's last" in findings["data.too_long"]["observed"]
    assert "max_length to 723 (the longest sample)" in findings["data.too_long"]["remediation"]
    assert "'ouput'" in findings["data.unexpected_key"]["observed"]


SHAREGPT_PLANTED = {
    "data.unknown_role": [3],
    "data.turn_order": [4, 7],
    "data.no_assistant_turn": [5],
    "data.last_turn_not_assistant": [6],
    "data.missing_key": [8],
}


def test_sharegpt_array_defects_at_their_lines(run_cli):
    code, doc, findings = check(run_cli, str(DATA / "sharegpt_defects.json"))
    assert doc["splits"]["train"]["format"]["format"] == "sharegpt"
    for rule_id, lines in SHAREGPT_PLANTED.items():
        assert [int(at.rsplit(":", 1)[1]) for at in lines_of(findings[rule_id])] == lines, rule_id
        assert findings[rule_id]["status"] == "fail"
    assert "two user turns in a row" in findings["data.turn_order"]["observed"]
    assert "the conversation starts with an assistant turn" in findings["data.turn_order"]["observed"]
    assert "'bot'" in findings["data.unknown_role"]["observed"]
    assert code == 1


MESSAGES_PLANTED = {
    "data.turn_order": [2],
    "data.empty_answer": [3],
    "data.wrong_type": [5],
    "data.empty_prompt": [7],
}


def test_messages_defects_at_their_lines_and_tool_calls_are_fine(run_cli):
    _, doc, findings = check(run_cli, str(DATA / "messages_defects.jsonl"))
    assert doc["splits"]["train"]["format"]["format"] == "messages"
    for rule_id, lines in MESSAGES_PLANTED.items():
        assert [int(at.rsplit(":", 1)[1]) for at in lines_of(findings[rule_id])] == lines, rule_id
    # line 4 (content parts) and line 6 (assistant tool call with null content, then tool) are valid
    for f in findings.values():
        assert not any(at.endswith((":4", ":6", ":8")) for at in lines_of(f)), f["id"]


@pytest.mark.parametrize("name", CLEAN)
def test_no_false_positives_on_clean_sets(run_cli, name):
    code, doc, findings = check(run_cli, str(DATA / name), "--eval", str(DATA / "eval_clean.jsonl"),
                                "--max-tokens", "512")
    problems = {k: f["observed"] for k, f in findings.items() if f["status"] not in ("pass", "skip")}
    assert problems == {}
    assert code == 0 and doc["verdict"]["status"] == "pass"


def test_every_rule_is_exercised_by_the_planted_sets():
    from preflight.data.rules import RULES

    planted = set(ALPACA_PLANTED) | set(SHAREGPT_PLANTED) | set(MESSAGES_PLANTED)
    cross_split = {"data.leakage", "data.near_leakage", "data.no_eval"}  # tests in test_data_cli.py
    pairs = {"data.identical_pair"}  # preference data: tests in test_data_wild.py
    assert set(RULES) == planted | cross_split | pairs
    for r in RULES.values():
        assert r.doc and r.title, r.id


def test_chinese_near_duplicates_use_character_ngrams(run_cli, tmp_path):
    base = "北京是中华人民共和国的首都，也是全国的政治中心和文化中心，有三千多年的建城史。"
    rows = [
        {"instruction": "介绍北京。", "input": "", "output": base},
        {"instruction": "介绍上海。", "input": "", "output": "上海位于长江入海口，是中国最大的经济中心和国际化大都市。"},
        {"instruction": "介绍北京。", "input": "", "output": base.replace("三千多年", "三千余年")},
    ]
    path = tmp_path / "zh.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    _, _, findings = check(run_cli, str(path))
    assert [int(at.rsplit(":", 1)[1]) for at in lines_of(findings["data.near_duplicate"])] == [3]
    assert findings["data.duplicate"]["status"] == "pass"


def test_dataset_info_mapping_is_used(run_cli):
    code, doc, findings = check(run_cli, str(DATA / "dataset_info.json"), "--dataset", "my_chat")
    fmt = doc["splits"]["train"]["format"]
    assert fmt["format"] == "sharegpt" and fmt["keys"]["messages"] == "dialog" and fmt["keys"]["role"] == "speaker"
    assert "my_chat" in fmt["how"]
    assert [int(at.rsplit(":", 1)[1]) for at in lines_of(findings["data.unknown_role"])] == [2]
    # the data file alone finds its entry in the dataset_info.json beside it
    _, doc2, _ = check(run_cli, str(DATA / "custom_chat.jsonl"))
    assert doc2["splits"]["train"]["format"]["keys"]["messages"] == "dialog"


def test_csv_rows_are_located_at_their_lines(run_cli):
    _, doc, findings = check(run_cli, str(DATA / "train.csv"))
    assert doc["splits"]["train"]["stats"]["records"] == 4
    assert [int(at.rsplit(":", 1)[1]) for at in lines_of(findings["data.empty_answer"])] == [5]


def test_parquet_records_are_located_by_index(run_cli, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"instruction": ["What is AI?", "Define ML."], "output": ["Artificial intelligence.", " "]}),
                   path)
    _, _, findings = check(run_cli, str(path))
    assert lines_of(findings["data.empty_answer"]) == [f"{path}[1]"]


def test_parquet_without_pyarrow_names_the_extra(run_cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 not really")
    code, out, err = run_cli("data", str(path))
    assert code == 2 and "preflight-ml[parquet]" in err and "Traceback" not in err


def test_many_hits_become_one_finding_with_a_count(run_cli, tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(5000):
            f.write(json.dumps({"instruction": f"question number {i} about topic {i * 7}", "input": "",
                                "output": "" if i % 2 else f"answer {i}"}) + "\n")
    _, _, findings = check(run_cli, str(path), "--show", "3", "--no-near-dup")
    empty = findings["data.empty_answer"]
    assert empty["evidence"]["count"] == 2500
    assert len(empty["evidence"]["locations"]) == 3
    assert "and 2,497 more" in empty["observed"]
