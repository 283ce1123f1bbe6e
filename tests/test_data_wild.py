"""`preflight data` on datasets as they are found in the wild: OpenAI chat fine-tuning files with
tool calls and content parts, LLaMA-Factory mappings, preference data, odd file layouts. Each
case has a valid form that must pass and a broken one that must be found."""

from __future__ import annotations

import json
from pathlib import Path

from preflight.data.formats import Schema
from preflight.data.records import check_record

DATA = Path(__file__).parent / "fixtures" / "data"


def check(run_cli, *args: str) -> tuple[int, dict, dict]:
    code, out, err = run_cli("data", *args, "--json")
    assert "Traceback" not in err
    doc = json.loads(out)
    return code, doc, {f["id"]: f for f in doc["findings"]}


def problems_of(record: dict, schema: Schema) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    check_record(record, schema, problems)
    return problems


def test_openai_tool_calls_weights_names_and_content_parts_pass(run_cli):
    """Tool calls with null content, tool results, legacy function calls, ``weight: 0``, ``name``,
    ``tools``/``functions``/``parallel_tool_calls`` and image parts: all valid OpenAI/HF data."""
    code, doc, findings = check(run_cli, str(DATA / "openai_tools.jsonl"), "--skip", "data.no_eval")
    assert doc["splits"]["train"]["format"]["format"] == "messages"
    assert {k: f["observed"] for k, f in findings.items() if f["status"] not in ("pass", "skip")} == {}
    assert code == 0 and doc["splits"]["train"]["stats"]["samples"] == 8


def test_content_parts_with_images():
    schema = Schema("messages", "t")
    image_question = {"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]}
    assert problems_of(image_question, schema) == []  # an image alone is a question
    empty_parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]},
                                {"role": "assistant", "content": []}]}
    assert [p[0] for p in problems_of(empty_parts, schema)] == ["data.empty_prompt", "data.empty_answer"]
    for bad in (["plain string part"], [{"text": "no type"}], [{"type": "text", "text": 3}]):
        broken = {"messages": [{"role": "user", "content": bad}, {"role": "assistant", "content": "a"}]}
        assert [p[0] for p in problems_of(broken, schema)] == ["data.wrong_type"], bad


def test_openai_record_keys_are_known_but_misspellings_are_not():
    schema = Schema("messages", "t")
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert problems_of({"messages": turns, "parallel_tool_calls": False, "functions": []}, schema) == []
    assert problems_of({"messages": turns, "tool": []}, schema) == [("data.unexpected_key", "'tool'")]


def test_fix_refuses_a_device_or_pipe_and_other_formats(run_cli, tmp_path):
    """``--fix /dev/null`` once renamed the cleaned copy over the device node (as root)."""
    import os
    import stat

    train = str(DATA / "clean_alpaca_en.jsonl")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    code, out, err = run_cli("data", train, "--fix", str(pipe))
    assert code == 2 and "not a regular file" in err and out == ""
    assert stat.S_ISFIFO(pipe.lstat().st_mode) and not list(tmp_path.glob(".pipe*"))
    code, _, err = run_cli("data", train, "--fix", str(tmp_path / "clean.csv"))
    assert code == 2 and "name OUT .jsonl or .json" in err and not (tmp_path / "clean.csv").exists()
    existing = tmp_path / "clean.jsonl"
    existing.write_text("old\n")
    code, _, _ = run_cli("data", train, "--fix", str(existing), "--skip", "data.no_eval")
    assert code == 0 and json.loads(existing.read_text().splitlines()[0])["output"]


def test_minified_json_array_is_located_by_index_not_all_at_line_1(run_cli, tmp_path, monkeypatch):
    """``json.dump(rows, f)`` writes the whole array on one line: every record then "started" on
    line 1, and a finding named line 1 five times."""
    from preflight.data import readers

    rows = [{"instruction": f"question {i}", "input": "", "output": "" if i in (2, 5) else f"answer {i}"}
            for i in range(8)]
    one_line = tmp_path / "train.json"
    one_line.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    _, _, findings = check(run_cli, str(one_line))
    assert [loc["at"] for loc in findings["data.empty_answer"]["evidence"]["locations"]] == [
        f"{one_line}[2]", f"{one_line}[5]"]
    monkeypatch.setattr(readers, "CHUNK", 5)  # the look at the next record crosses reads
    assert [r.line for r in readers.read_records(one_line)] == [None] * 8
    pretty = tmp_path / "pretty.json"  # one record per line, and records over several lines: lines
    pretty.write_text("[" + ",\n".join(json.dumps(r) for r in rows[:4]) + ",\n"
                      + ",\n".join(json.dumps(r, indent=1) for r in rows[4:]) + "]")
    assert [r.line for r in readers.read_records(pretty)] == [1, 2, 3, 4, 5, 10, 15, 20]
    mixed = tmp_path / "mixed.json"  # two records share line 2: those two by index, the rest by line
    mixed.write_text("[\n" + json.dumps(rows[0]) + ",\n" + json.dumps(rows[1]) + ", " + json.dumps(rows[2])
                     + ",\n" + json.dumps(rows[3]) + "\n]")
    assert [r.line for r in readers.read_records(mixed)] == [2, None, None, 4]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


PAIRS = {  # the preference shapes of TRL and LLaMA-Factory, two clean records each
    "strings": [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
                {"prompt": "The sun is", "chosen": " yellow.", "rejected": " purple."}],
    "alpaca": [{"instruction": "Capital of France?", "input": "", "chosen": "Paris.", "rejected": "London."},
               {"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"}],
    "conversational": [
        {"prompt": [{"role": "user", "content": "Sky colour?"}], "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "Green."}]},
        {"prompt": [{"role": "user", "content": "Sun?"}], "chosen": [{"role": "assistant", "content": "A star."}],
         "rejected": [{"role": "assistant", "content": "A planet."}]}],
    "implicit": [
        {"chosen": [{"role": "user", "content": "Sky colour?"}, {"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "user", "content": "Sky colour?"}, {"role": "assistant", "content": "Green."}]},
        {"chosen": [{"role": "user", "content": "Sun?"}, {"role": "assistant", "content": "A star."}],
         "rejected": [{"role": "user", "content": "Sun?"}, {"role": "assistant", "content": "A planet."}]}],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": "Capital of France?"}],
         "chosen": {"from": "gpt", "value": "Paris."}, "rejected": {"from": "gpt", "value": "London."}},
        {"conversations": [{"from": "human", "value": "2+2?"}],
         "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}}],
}


def test_preference_pairs_are_detected_and_pass(run_cli, tmp_path):
    """chosen/rejected data was "cannot tell the format" (auto) or a missing 'output' on every
    record (a dataset_info.json ``ranking`` entry)."""
    for shape, rows in PAIRS.items():
        path = _write_jsonl(tmp_path / f"{shape}.jsonl", rows)
        code, doc, findings = check(run_cli, str(path), "--skip", "data.no_eval")
        train = doc["splits"]["train"]
        assert "preference pairs: " in train["format"]["how"] and train["format"]["keys"]["rejected"] == "rejected"
        assert {k: f["observed"] for k, f in findings.items() if f["status"] not in ("pass", "skip")} == {}, shape
        assert code == 0 and train["stats"]["samples"] == 2, shape


def test_preference_pair_defects():
    from preflight.data.formats import detect

    def found(rows: list) -> list[str]:
        schema = detect(rows, "auto", "t")
        return sorted({p[0] for r in rows for p in problems_of(r, schema)})

    strings = PAIRS["strings"]
    assert found([strings[0], {"prompt": "Snow is", "chosen": "white", "rejected": " "}]) == ["data.empty_answer"]
    assert found([strings[0], {"prompt": "Snow is", "chosen": "white", "rejected": None}]) == ["data.null_value"]
    conv = PAIRS["conversational"][0]
    assert found([conv, {**conv, "rejected": [{"role": "user", "content": "x"}]}]) == ["data.unknown_role"]
    assert found([conv, {**conv, "rejected": "Green."}]) == ["data.wrong_type"]
    assert found([conv, {**conv, "chosen": [{"role": "assistant", "content": ""}]}]) == ["data.empty_answer"]
    # a prompt that already ends with the assistant: the chosen turn follows it ("Invalid message count")
    sharegpt = PAIRS["sharegpt"][0]
    ends_with_gpt = {**sharegpt, "conversations": sharegpt["conversations"] + [{"from": "gpt", "value": "Paris."}]}
    assert found([sharegpt, ends_with_gpt]) == ["data.turn_order"]


def test_llama_factory_ranking_entries(run_cli, tmp_path):
    info = {"dpo_alpaca": {"file_name": "dpo.json", "ranking": True,
                           "columns": {"prompt": "instruction", "query": "input", "chosen": "better", "rejected": "worse"}},
            "dpo_sharegpt": {"file_name": "dpo_sg.json", "formatting": "sharegpt", "ranking": True,
                             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    alpaca = [{"instruction": r["instruction"], "input": "", "better": r["chosen"], "worse": r["rejected"]}
              for r in PAIRS["alpaca"]]
    (tmp_path / "dpo.json").write_text(json.dumps(alpaca, indent=1))
    (tmp_path / "dpo_sg.json").write_text(json.dumps(PAIRS["sharegpt"], indent=1))
    for name in info:
        code, doc, findings = check(run_cli, str(tmp_path / "dataset_info.json"), "--dataset", name,
                                    "--skip", "data.no_eval")
        assert "ranking" in doc["splits"]["train"]["format"]["how"]
        assert code == 0 and not [f for f in findings.values() if f["status"] in ("warn", "fail")], name
    alpaca[1]["worse"] = ""
    (tmp_path / "dpo.json").write_text(json.dumps(alpaca, indent=1))
    code, _, findings = check(run_cli, str(tmp_path / "dataset_info.json"), "--dataset", "dpo_alpaca")
    assert code == 1 and findings["data.empty_answer"]["observed"].endswith("dpo.json:8 'worse' is empty")


def test_dataset_info_columns_for_tools_and_media_are_not_unexpected(run_cli, tmp_path):
    info = {"sg": {"file_name": "sg.json", "formatting": "sharegpt",
                   "columns": {"messages": "conversations", "tools": "functions", "images": "pics"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    row = {"conversations": [{"from": "human", "value": "<image>hi"}, {"from": "gpt", "value": "yo"}],
           "functions": "[]", "pics": ["a.png"]}
    (tmp_path / "sg.json").write_text(json.dumps([row, {**row, "picz": []}], indent=1))
    _, _, findings = check(run_cli, str(tmp_path / "dataset_info.json"), "--dataset", "sg")
    assert findings["data.unexpected_key"]["observed"].endswith("sg.json:18 'picz'")  # only the misspelt one


def test_jsonl_line_cut_short_is_at_its_end_not_column_1(tmp_path):
    """The newline ending a JSONL line made a truncated record "Expecting ',' delimiter (column 1)"."""
    from preflight.data import readers

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"instruction": "d", "output": "e"\r\n{"a": 2, "b": oops}\n{"a": 1}{"b": 2}')
    errors = [(r.line, r.error) for r in readers.read_records(path) if r.error]
    assert errors == [(2, "invalid JSON: Expecting ',' delimiter (at the end of the line, column 35: cut short?)"),
                      (3, "invalid JSON: Expecting value (column 15)"),
                      (4, "invalid JSON: Extra data (column 9)")]


def test_only_a_pair_schema_knows_rejected():
    alpaca, pair = Schema("alpaca", "t"), Schema("alpaca", "t", response="chosen", rejected="rejected")
    assert problems_of({"instruction": "q", "output": "a", "messages": []}, alpaca) == [
        ("data.unexpected_key", "'messages'")]
    assert problems_of({"instruction": "q", "output": "a", "rejected": "b"}, alpaca) == [
        ("data.unexpected_key", "'rejected'")]
    assert problems_of({"instruction": "q", "chosen": "a", "rejected": "b"}, pair) == []


def test_two_hits_in_one_record_count_one_record(run_cli, tmp_path):
    """A ShareGPT record with roles user/assistant made "3 records" of unknown roles out of 2."""
    rows = [{"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello"}]},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "chatgpt", "value": "Yo"}]},
            {"conversations": [{"from": "human", "value": "Hey"}, {"from": "gpt", "value": "Hello"}]}]
    _, _, findings = check(run_cli, str(_write_jsonl(tmp_path / "sg.jsonl", rows)))
    f = findings["data.unknown_role"]
    assert f["evidence"]["count"] == 2 and f["observed"].startswith("2 records: ")
    assert [loc["at"].rsplit(":", 1)[1] for loc in f["evidence"]["locations"]] == ["1", "2"]
    first = f["evidence"]["locations"][0]["detail"]
    assert first.startswith("turn 0 from 'user'") and " and turn 1 from 'assistant'" in first


def test_compressed_file_is_a_clear_one_line_error(run_cli, tmp_path):
    import gzip

    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(PAIRS["alpaca"][0]) + "\n")
    code, out, err = run_cli("data", str(path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{path}: compressed (.gz): not read; decompress it first (gunzip -k train.jsonl.gz)" in err
    plain = _write_jsonl(tmp_path / "train.jsonl", PAIRS["alpaca"])
    assert run_cli("data", str(plain), "--skip", "data.no_eval")[0] == 0


def _other_rejected(shape: str, row: dict, text: str) -> dict:
    """``row`` with its rejected answer replaced by ``text``, in the row's own shape."""
    rejected = row["rejected"]
    if isinstance(rejected, str):
        return {**row, "rejected": text}
    if isinstance(rejected, dict):
        return {**row, "rejected": {**rejected, "value": text}}
    return {**row, "rejected": rejected[:-1] + [{**rejected[-1], "content": text}]}


def _chosen_text(row: dict) -> str:
    chosen = row["chosen"]
    if isinstance(chosen, str):
        return chosen
    return chosen["value"] if isinstance(chosen, dict) else chosen[-1]["content"]


def test_pairs_that_differ_only_in_the_rejected_answer_are_not_duplicates(run_cli, tmp_path):
    """Several rejected answers per prompt (UltraFeedback-style binarisation) are distinct pairs;
    the same pair twice is a duplicate."""
    for shape, rows in PAIRS.items():
        third = _other_rejected(shape, rows[0], "Something else entirely.")
        path = _write_jsonl(tmp_path / f"{shape}.jsonl", [*rows, third])
        code, _, findings = check(run_cli, str(path), "--skip", "data.no_eval")
        assert findings["data.duplicate"]["status"] == "pass" and code == 0, shape
        path = _write_jsonl(tmp_path / f"{shape}.jsonl", [*rows, rows[0]])
        _, _, findings = check(run_cli, str(path), "--skip", "data.no_eval")
        assert findings["data.duplicate"]["status"] == "warn", shape


def test_a_pair_whose_rejected_answer_is_the_chosen_one_warns(run_cli, tmp_path):
    for shape, rows in PAIRS.items():
        same = _other_rejected(shape, rows[1], "  " + _chosen_text(rows[1]).upper() + " ")
        path = _write_jsonl(tmp_path / f"{shape}.jsonl", [rows[0], same])
        code, _, findings = check(run_cli, str(path), "--skip", "data.no_eval")
        assert findings["data.identical_pair"]["status"] == "warn", shape
        assert f"{path.name}:2" in findings["data.identical_pair"]["observed"] and code == 0, shape
        code, _, findings = check(run_cli, str(_write_jsonl(path, rows)), "--skip", "data.no_eval")
        assert findings["data.identical_pair"]["status"] == "pass" and code == 0, shape
    # not a preference pair: the rule has nothing to look at
    schema_rows = [{"instruction": "a", "input": "", "output": "a"}, {"instruction": "b", "input": "", "output": "b"}]
    _, _, findings = check(run_cli, str(_write_jsonl(tmp_path / "sft.jsonl", schema_rows)), "--skip", "data.no_eval")
    assert findings["data.identical_pair"]["status"] == "pass"


def test_turns_after_the_last_answer_make_a_different_record(run_cli, tmp_path):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rows = [{"messages": chat}, {"messages": chat + [{"role": "user", "content": "Bye"}]}]
    _, _, findings = check(run_cli, str(_write_jsonl(tmp_path / "c.jsonl", rows)), "--skip", "data.no_eval")
    assert findings["data.duplicate"]["status"] == "pass"
    assert findings["data.last_turn_not_assistant"]["status"] == "fail"
    _, _, findings = check(run_cli, str(_write_jsonl(tmp_path / "c.jsonl", [rows[0], rows[0]])), "--skip", "data.no_eval")
    assert findings["data.duplicate"]["status"] == "warn"


def test_records_wrapped_in_one_object_and_semicolon_csv_say_why(run_cli, tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(3)]
    (tmp_path / "w.json").write_text(json.dumps({"version": 1, "data": rows}))
    code, _, err = run_cli("data", str(tmp_path / "w.json"))
    assert code == 2 and err.count("\n") == 1
    assert "one JSON object whose 'data' holds 3 records" in err and "jq -c '.data[]'" in err
    (tmp_path / "s.csv").write_text("instruction;input;output\nq1;;a1\nq2;;a2\n")
    code, _, err = run_cli("data", str(tmp_path / "s.csv"))
    assert code == 2 and "one column holding ';'" in err and "--format" not in err
    # an unknown shape still gets the key list and --format
    (tmp_path / "u.jsonl").write_text('{"foo": 1}\n{"foo": 2}\n')
    code, _, err = run_cli("data", str(tmp_path / "u.jsonl"))
    assert code == 2 and "(keys: 'foo')" in err and "pass --format" in err
    (tmp_path / "ok.csv").write_text("instruction,input,output\nq1,,a1\nq2,,a2\n")
    assert run_cli("data", str(tmp_path / "ok.csv"), "--skip", "data.no_eval")[0] == 0


def test_a_pair_is_too_long_when_its_rejected_answer_is(run_cli, tmp_path):
    """TRL's DPOTrainer truncates prompt + chosen and prompt + rejected each to max_length: the
    longer answer decides. Estimate: 4 ASCII characters a token, + 5 template tokens per turn."""
    short = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Green."}
    rambling = {**short, "rejected": "Green, " * 40 + "or maybe blue."}  # ~75 tokens
    path = _write_jsonl(tmp_path / "pairs.jsonl", [short, rambling])
    code, _, findings = check(run_cli, str(path), "--max-tokens", "40", "--skip", "data.no_eval")
    f = findings["data.too_long"]
    assert f["status"] == "warn" and code == 0 and f["evidence"]["count"] == 1
    assert "pairs.jsonl:2" in f["observed"] and "with the rejected answer" in f["observed"]
    swapped = {**rambling, "chosen": rambling["rejected"], "rejected": "Blue."}
    _, _, findings = check(run_cli, str(_write_jsonl(path, [short, swapped])), "--max-tokens", "40",
                           "--skip", "data.no_eval")
    assert "pairs.jsonl:2" in findings["data.too_long"]["observed"]
    assert "with the rejected answer" not in findings["data.too_long"]["observed"]
    _, _, findings = check(run_cli, str(_write_jsonl(path, [short])), "--max-tokens", "40", "--skip", "data.no_eval")
    assert findings["data.too_long"]["status"] == "pass"


def test_a_pair_is_counted_exactly_with_a_tokenizer(run_cli, tmp_path):
    import pytest

    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    words = "name a colour blue green or maybe".split()
    tok = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}},
                                                unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    rows = [{"prompt": "name a colour", "chosen": "blue", "rejected": "green " * 30},
            {"prompt": "name a colour", "chosen": "green", "rejected": "blue"}]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    # prompt 3 + 10 template tokens; chosen 1, rejected 30 -> 43 with the rejected answer
    _, doc, findings = check(run_cli, str(path), "--tokenizer", str(tmp_path), "--max-tokens", "20",
                             "--skip", "data.no_eval")
    assert doc["tokens"]["exact"] is True
    assert findings["data.too_long"]["evidence"]["count"] == 1
    assert "pairs.jsonl:1 43 tokens with the rejected answer (14 with the chosen one)" in findings["data.too_long"]["observed"]


def test_openai_role_names_in_a_sharegpt_file_get_the_tags_that_map_them(run_cli, tmp_path):
    """LLaMA-Factory's ShareGPT reader accepts only its tags (human/gpt by default): 'user' and
    'assistant' are "Invalid role tag" and the example is dropped. The fix names the tags, and
    with them the same file passes."""
    rows = [{"conversations": [{"from": "user", "value": f"q{i}"}, {"from": "assistant", "value": "a"}]}
            for i in range(2)]
    path = _write_jsonl(tmp_path / "sg.jsonl", rows)
    code, _, findings = check(run_cli, str(path), "--skip", "data.no_eval")
    f = findings["data.unknown_role"]
    assert code == 1 and f["status"] == "fail" and '"user_tag": "user"' in f["remediation"]
    tags = json.loads("{" + f["remediation"].split('"tags": {', 1)[1].split("}", 1)[0].join(["\"tags\": {", "}"]) + "}")
    info = {"sg": {"file_name": "sg.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}, **tags}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    code, _, findings = check(run_cli, str(tmp_path / "dataset_info.json"), "--dataset", "sg", "--skip", "data.no_eval")
    assert code == 0 and findings["data.unknown_role"]["status"] == "pass"


def test_ultrafeedback_binarized_pairs_are_read_once(run_cli, tmp_path):
    """HuggingFaceH4/ultrafeedback_binarized: chosen/rejected are whole conversations (TRL's
    implicit prompt), next to prompt, prompt_id, messages (the chosen conversation again) and the
    scores. The pair is read from chosen/rejected alone: 2 turns a sample, not 4, no unexpected keys."""
    rows = []
    for i in range(3):
        user = {"role": "user", "content": f"Question number {i}: how do I reverse a list {i} times?"}
        good, bad = {"role": "assistant", "content": f"Use xs[::-1] ({i})."}, {"role": "assistant", "content": "No."}
        rows.append({"prompt": user["content"], "prompt_id": f"p{i}", "chosen": [user, good], "rejected": [user, bad],
                     "messages": [user, good], "score_chosen": 8.0, "score_rejected": 2.0})
    path = _write_jsonl(tmp_path / "uf.jsonl", rows)
    code, doc, findings = check(run_cli, str(path), "--skip", "data.no_eval,data.near_duplicate")
    train = doc["splits"]["train"]
    assert code == 0 and train["format"]["keys"]["messages"] == "chosen" and "completion" not in train["format"]["keys"]
    assert train["stats"]["turns"] == {"2": 3}
    assert findings["data.unexpected_key"]["status"] == "pass"
    # a misspelt key beside them is still unexpected
    rows[1]["score_chosn"] = 1.0
    _, _, findings = check(run_cli, str(_write_jsonl(path, rows)), "--skip", "data.no_eval,data.near_duplicate")
    assert findings["data.unexpected_key"]["status"] == "warn" and "score_chosn" in findings["data.unexpected_key"]["observed"]


def test_ultrachat_prompt_columns_beside_messages_are_known(run_cli, tmp_path):
    """HuggingFaceH4/ultrachat_200k: prompt (the first user turn again) and prompt_id beside messages."""
    rows = [{"prompt": f"Tell me about topic {i}.", "prompt_id": f"{i:064x}",
             "messages": [{"role": "user", "content": f"Tell me about topic {i}."},
                          {"role": "assistant", "content": f"Topic {i} is a subject with a long history."}]}
            for i in range(3)]
    path = _write_jsonl(tmp_path / "uc.jsonl", rows)
    code, _, findings = check(run_cli, str(path), "--skip", "data.no_eval,data.near_duplicate")
    assert code == 0 and findings["data.unexpected_key"]["status"] == "pass"
    rows[0]["promt"] = "typo"
    _, _, findings = check(run_cli, str(_write_jsonl(path, rows)), "--skip", "data.no_eval,data.near_duplicate")
    assert findings["data.unexpected_key"]["status"] == "warn" and "promt" in findings["data.unexpected_key"]["observed"]


def test_plain_text_samples_get_no_chat_template_tokens(run_cli, tmp_path):
    """A ``text`` dataset is trained as written (TRL's dataset_text_field, LLaMA-Factory's pt
    stage): its token count is the text's alone, where a chat sample adds the template's."""
    text = "word " * 40 + "end."  # 204 ASCII characters: 51 tokens by the estimate
    plain = _write_jsonl(tmp_path / "pt.jsonl", [{"text": text}, {"text": text.upper()}])
    code, doc, findings = check(run_cli, str(plain), "--max-tokens", "51", "--skip", "data.no_eval,data.duplicate")
    tokens = doc["splits"]["train"]["stats"]["tokens"]
    assert code == 0 and tokens["max"] == 51 and findings["data.too_long"]["status"] == "pass"
    assert doc["splits"]["train"]["chat_template_counted"] is False
    chat = _write_jsonl(tmp_path / "chat.jsonl", [{"instruction": "", "input": "", "output": text},
                                                  {"instruction": "x", "input": "", "output": text.upper()}])
    _, doc, findings = check(run_cli, str(chat), "--max-tokens", "51", "--skip", "data.no_eval,data.duplicate,data.empty_prompt")
    assert findings["data.too_long"]["status"] == "warn"  # + 5 template tokens a turn
    assert doc["splits"]["train"]["chat_template_counted"] is True


def test_parquet_with_unified_structs_does_not_warn_of_null_keys(run_cli, tmp_path):
    """HF datasets writes Parquet with one struct type for every turn and one schema for every row:
    a turn carries every key any turn has (tool_calls, refusal, ...), null where it had none. A
    null key carries nothing; a key with a value the trainer does not read still warns."""
    import pytest

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    def turn(role: str, text: str, refusal: str | None = None) -> dict:
        return {"role": role, "content": text, "refusal": refusal, "tool_calls": None}

    rows = [{"messages": [turn("user", f"Q{i}: name a prime number above {i}."), turn("assistant", f"{i * 7 + 3}.")],
             "source": None, "extra_note": None} for i in range(4)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    code, _, findings = check(run_cli, str(path), "--skip", "data.no_eval,data.near_duplicate")
    assert code == 0 and findings["data.unexpected_key"]["status"] == "pass"
    rows[2]["messages"][1]["refusal"] = "I cannot help with that."
    rows[3]["extra_note"] = "kept by hand"
    pq.write_table(pa.Table.from_pylist(rows), path)
    _, _, findings = check(run_cli, str(path), "--skip", "data.no_eval,data.near_duplicate")
    observed = findings["data.unexpected_key"]["observed"]
    assert "train.parquet[2] turn 1: 'refusal'" in observed and "train.parquet[3] 'extra_note'" in observed
