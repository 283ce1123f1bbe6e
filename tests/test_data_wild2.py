"""`preflight data`, second pass over inputs found in the wild: Parquet as HF ``datasets`` writes
it, lone surrogates and other encodings, tokenizer folders, LLaMA-Factory entries that are not one
local file. Each case has a valid form that must pass and a broken one that must be found."""

from __future__ import annotations

import json

import pytest

from preflight.data import readers


def check(run_cli, *args: str) -> tuple[int, dict, dict]:
    code, out, err = run_cli("data", *args, "--json")
    assert "Traceback" not in err
    doc = json.loads(out)
    return code, doc, {f["id"]: f for f in doc["findings"]}


def bad(findings: dict) -> dict[str, str]:
    return {k: f["observed"] for k, f in findings.items() if f["status"] in ("fail", "warn")}


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_lone_surrogates_are_broken_records_and_pairs_are_not(run_cli, tmp_path, suffix):
    """``"\\ud800"`` parses in Python but is not Unicode: Arrow (``datasets``) refuses the file and the
    near-duplicate signing once crashed on it (exit 3). A proper pair is one emoji."""
    lone = '{"instruction": "a\\ud800b", "input": "", "output": "c"}'
    pair = '{"instruction": "pair", "input": "", "output": "\\ud83d\\ude00"}'
    train = tmp_path / f"train{suffix}"
    train.write_text(f"[{lone},\n{pair}]\n" if suffix == ".json" else f"{lone}\n{pair}\n")
    out = tmp_path / "out.jsonl"
    code, doc, findings = check(run_cli, str(train), "--skip", "data.no_eval", "--fix", str(out))
    assert code == 1 and findings["data.invalid_json"]["evidence"]["count"] == 1
    assert "lone surrogate" in findings["data.invalid_json"]["observed"] and f"{train.name}:1 " in \
        findings["data.invalid_json"]["observed"]
    assert out.read_text(encoding="utf-8") == '{"instruction": "pair", "input": "", "output": "😀"}\n'
    train.write_text(f"[{pair}]\n" if suffix == ".json" else f"{pair}\n")
    code, doc, findings = check(run_cli, str(train), "--skip", "data.no_eval")
    assert code == 0 and bad(findings) == {}


def test_lone_surrogates_without_orjson():
    assert readers._std_loads(b'{"a": "\\ud83d\\ude00"}') == {"a": "😀"}
    assert readers._std_loads(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}  # an escaped backslash: text
    with pytest.raises(readers.NotUnicode):
        readers._std_loads(b'{"a": ["x", {"\\uDC00": 1}]}')


@pytest.mark.parametrize(("name", "codec", "text", "hint"), [
    ("excel.csv", "cp1252", "instruction,input,output\nplain,,text\nCafé crème,,naïve “quote”\n",
     "excel.csv:3: not UTF-8 text (byte 0xe9, column 4); as WINDOWS-1252 it reads 'Café crème,,naïve “quote”': "
     "iconv -f WINDOWS-1252 -t UTF-8 excel.csv > excel.utf8.csv"),
    ("zh.json", "gbk", '[{"instruction": "ok", "input": "", "output": "x"},\n'
                       '{"instruction": "你好，世界", "input": "", "output": "中文回答"}]\n',
     "zh.json:2: not UTF-8 text (byte 0xc4, column 18); as GB18030 it reads"),
])
def test_files_in_another_encoding_name_the_line_and_the_encoding(run_cli, tmp_path, name, codec, text, hint):
    """A Windows-1252 CSV (Excel's "CSV" on Western European Windows) was reported at line 1 as
    "byte 28 of a chunk"; now the line, the column and the likely encoding, with the command."""
    path = tmp_path / name
    path.write_bytes(text.encode(codec))
    code, out, err = run_cli("data", str(path))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert hint in err
    path.write_text(text, encoding="utf-8")  # the same text in UTF-8 reads
    code, doc, findings = check(run_cli, str(path), "--skip", "data.no_eval")
    assert code == 0 and doc["splits"]["train"]["stats"]["records"] == 2


def test_not_utf8_finds_a_character_cut_by_a_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK", 7)
    path = tmp_path / "t.csv"
    path.write_bytes("a,b\né,中\nx\xe9\n".encode()[:-2] + b"\xe9\n")
    error = readers.not_utf8(path)
    assert error.line == 3 and "column 2" in str(error)
