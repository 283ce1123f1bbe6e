"""`preflight data`, second pass over inputs found in the wild: Parquet as HF ``datasets`` writes
it, lone surrogates and other encodings, tokenizer folders, LLaMA-Factory entries that are not one
local file. Each case has a valid form that must pass and a broken one that must be found."""

from __future__ import annotations

import json
from pathlib import Path

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


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SYSTEM_DEFAULT = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nbe helpful<|im_end|>\n{% endif %}"
                  + CHATML)


def _model_folder(folder: Path, template: str | None) -> Path:
    """A model folder as ``save_pretrained`` leaves it: tokenizer.json (WordLevel here),
    tokenizer_config.json with a chat_template, special_tokens_map.json."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    words = "question number about things answer is long enough user assistant system be helpful".split()
    specials = ["[UNK]", "<|im_start|>", "<|im_end|>"]
    tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials[1:])
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "tokenizer_class": "PreTrainedTokenizerFast"}
    if template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    return folder


@pytest.mark.parametrize(("template", "expected", "how"), [
    # ChatML: <|im_start|> role <|im_end|> around each turn, the "\n"s are no WordLevel token: 3 a turn
    (CHATML, 4 + 4 + 3 * 2, "+3 per turn and +0 per sample, measured from the tokenizer_config.json's chat_template"),
    # a default system prompt (Qwen2.5 adds one): 5 tokens once per sample
    (SYSTEM_DEFAULT, 4 + 4 + 3 * 2 + 5, "+3 per turn and +5 per sample"),
    (None, 4 + 4 + 5 * 2, "+5 per turn (assumed, ChatML: no chat_template found)"),
])
def test_token_counts_use_the_model_folders_chat_template(run_cli, tmp_path, template, expected, how):
    """The counts were the text's tokens + 5 a turn whatever the template, and the report did not
    say so when --tokenizer was given. Now the template's own tokens are measured, and said."""
    pytest.importorskip("jinja2")
    folder = _model_folder(tmp_path / "model", template)
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "question number about things"},
                                             {"role": "assistant", "content": "answer is long enough"}]}) + "\n")
    code, doc, _ = check(run_cli, str(data), "--tokenizer", str(folder), "--skip", "data.no_eval")
    assert code == 0 and doc["tokens"]["exact"] is True and how in doc["tokens"]["template"]["how"]
    assert doc["splits"]["train"]["stats"]["tokens"]["max"] == expected
    code, out, _ = run_cli("data", str(data), "--tokenizer", str(folder), "--skip", "data.no_eval")
    assert "token counts are exact" in out and "chat template +" in " ".join(out.split())


def test_tokenizer_that_is_not_local_or_not_a_tokenizer_is_one_clear_line(run_cli, tmp_path, monkeypatch):
    data = tmp_path / "t.jsonl"
    data.write_text('{"text": "question"}\n')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli("data", str(data), "--tokenizer", "Qwen/Qwen2.5-7B")
    assert code == 2 and "local files only and never downloads" in err and "huggingface-cli download" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("a model card")
    code, _, err = run_cli("data", str(data), "--tokenizer", str(tmp_path / "notes"))
    assert code == 2 and "not a tokenizer folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / "tokenizer.model").write_bytes(b"\x0a\x05 not a real sentencepiece model")
    code, _, err = run_cli("data", str(data), "--tokenizer", str(tmp_path / "sp"))
    assert code == 2 and "SentencePiece tokenizer.model" in err and len(err.strip().splitlines()) == 1


def test_a_hub_id_in_the_local_cache_is_read_from_it(run_cli, tmp_path, monkeypatch):
    """A hub id already downloaded (``~/.cache/huggingface/hub``) is read from the cache, offline."""
    snapshot = tmp_path / "cache" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.parent.mkdir(parents=True)
    _model_folder(snapshot, CHATML)
    (tmp_path / "cache" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "t.jsonl"
    data.write_text('{"text": "question number"}\n')
    code, doc, _ = check(run_cli, str(data), "--tokenizer", "org/tiny", "--skip", "data.no_eval")
    assert code == 0 and doc["tokens"]["exact"] is True and "abc123" in doc["tokens"]["how"]


def _alpaca_lines(*pairs: tuple[str, str]) -> str:
    return "".join(json.dumps({"instruction": q, "input": "", "output": a}) + "\n" for q, a in pairs)


def test_dataset_info_folder_and_several_entries_are_one_split(run_cli, tmp_path):
    """LLaMA-Factory loads every file of a ``file_name`` folder, and ``dataset: a,b`` concatenates
    entries; both were refused ("is a folder", "Undefined dataset 'a,b'"). Each record is located
    in its own file, and a repeat across files is one."""
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "b.json").write_text(_alpaca_lines(("what is two", "two"), ("what is one", "one")))
    (tmp_path / "parts" / "a.json").write_text(_alpaca_lines(("what is three", "three")))
    (tmp_path / "extra.jsonl").write_text(_alpaca_lines(("what is four", "four")))
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"folder": {"file_name": "parts"}, "extra": {"file_name": "extra.jsonl"},
                                "chat": {"file_name": "extra.jsonl", "formatting": "sharegpt"}}))
    code, doc, findings = check(run_cli, str(info), "--dataset", "folder,extra", "--skip", "data.no_eval")
    split = doc["splits"]["train"]
    assert code == 0 and bad(findings) == {} and split["stats"]["records"] == 4
    assert [Path(p).name for p in split["files"]] == ["a.json", "b.json", "extra.jsonl"]
    (tmp_path / "extra.jsonl").write_text(_alpaca_lines(("what is four", "four"), ("what is one", "one"), ("x", "")))
    code, doc, findings = check(run_cli, str(info), "--dataset", "folder,extra", "--skip", "data.no_eval")
    assert code == 1
    assert findings["data.duplicate"]["evidence"]["locations"][0]["at"] == f"{tmp_path / 'extra.jsonl'}:2"
    assert findings["data.duplicate"]["evidence"]["locations"][0]["detail"] == f"same as {tmp_path / 'parts' / 'b.json'}:2"
    assert findings["data.empty_answer"]["evidence"]["locations"][0]["at"] == f"{tmp_path / 'extra.jsonl'}:3"
    code, _, err = run_cli("data", str(info), "--dataset", "folder,chat")
    assert code == 2 and "read differently" in err
    (tmp_path / "parts" / "c.csv").write_text("instruction,input,output\nq,,a\n")
    code, _, err = run_cli("data", str(info), "--dataset", "folder")
    assert code == 2 and "types are not identical" in err


@pytest.mark.parametrize(("entry", "message"), [
    ({"hf_hub_url": "tatsu-lab/alpaca"}, "on the Hugging Face Hub (hf_hub_url 'tatsu-lab/alpaca'), not a local file"),
    ({"ms_hub_url": "AI-ModelScope/alpaca"}, "on ModelScope"),
    ({"script_url": "my_script"}, "built by a loading script (script_url 'my_script'), which preflight does not run"),
])
def test_dataset_info_entries_that_are_not_local_files(run_cli, tmp_path, entry, message):
    (tmp_path / "d.jsonl").write_text(_alpaca_lines(("q", "a")))
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"remote": entry, "local": {"file_name": "d.jsonl", "num_samples": 1}}))
    code, _, err = run_cli("data", str(info), "--dataset", "remote")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, doc, findings = check(run_cli, str(info), "--dataset", "local", "--skip", "data.no_eval")
    assert code == 0 and "num_samples 1" in doc["splits"]["train"]["format"]["how"]
