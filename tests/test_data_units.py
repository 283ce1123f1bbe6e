"""The parts of `preflight data` on their own: readers, format detection, per-record checks, text
quality (positives and the look-alikes that must pass), token estimates, MinHash and LSH."""

from __future__ import annotations

import json
import os
import random
import sys
import zlib

import pytest

from preflight.data import dedup, readers
from preflight.data.formats import Schema, detect
from preflight.data.records import check_record
from preflight.data.stats import script_of
from preflight.data.text_quality import quality_problems
from preflight.data.tokens import estimate_tokens, truncation
from preflight.errors import InputError

# --------------------------------------------------------------------------------------------
# readers


def test_json_array_is_streamed_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK", 7)  # every record spans several reads
    rows = [{"instruction": f"question {i} " + "é" * i, "output": "answer\nwith a newline"} for i in range(30)]
    path = tmp_path / "train.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n", encoding="utf-8")
    got = list(readers.read_records(path))
    assert [r.value for r in got] == rows
    assert [r.line for r in got] == list(range(2, 32))


def test_json_array_syntax_error_ends_the_file_at_its_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[\n{"a": 1},\n{"a": 2},\n{"a": oops},\n{"a": 4}\n]')
    got = list(readers.read_records(path))
    assert [r.value for r in got[:2]] == [{"a": 1}, {"a": 2}]
    assert got[2].error.startswith("invalid JSON") and got[2].line == 4 and len(got) == 3


def test_jsonl_skips_blank_lines_and_a_bom_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n   \n{"a": 2}\nnot json\n')
    got = list(readers.read_records(path))
    assert [(r.index, r.line, r.value) for r in got[:2]] == [(0, 1, {"a": 1}), (1, 4, {"a": 2})]
    assert got[2].line == 5 and got[2].error.startswith("invalid JSON")


def test_jsonl_with_invalid_utf8_is_a_finding_not_a_crash(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "\xff\xfe"}\n')
    got = list(readers.read_records(path))
    assert got[0].error is None and got[1].error is not None


def test_csv_multiline_cells_report_the_starting_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('instruction,output\nfirst,"two\nlines"\nsecond,x\n', encoding="utf-8")
    got = list(readers.read_records(path))
    assert [(r.line, r.value["instruction"]) for r in got] == [(2, "first"), (4, "second")]


def test_unknown_extension_and_empty_files_are_input_errors(tmp_path):
    for name, content in (("a.txt", b"hello"), ("b.jsonl", b""), ("c.csv", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError):
            list(readers.read_records(path))


# --------------------------------------------------------------------------------------------
# formats and records


def test_detection_says_what_it_saw():
    schema = detect([{"conversations": [{"from": "human", "value": "x"}]}] * 3, "auto", "f")
    assert schema.format == "sharegpt" and schema.role == "from" and "3 of the first 3" in schema.how
    schema = detect([{"messages": [{"role": "user", "content": "x"}]}], "auto", "f")
    assert (schema.format, schema.role) == ("messages", "role")
    schema = detect([{"prompt": "p", "completion": "c"}], "auto", "f")
    assert (schema.format, schema.prompt, schema.response) == ("alpaca", "prompt", "completion")
    assert detect([{"text": "hello"}], "auto", "f").format == "text"
    with pytest.raises(InputError, match="cannot tell the format"):
        detect([{"foo": 1}], "auto", "f")


def test_trl_conversational_prompt_completion():
    record = {"prompt": [{"role": "user", "content": "What color is the sky?"}],
              "completion": [{"role": "assistant", "content": "Blue."}]}
    schema = detect([record], "auto", "f")
    assert (schema.format, schema.messages, schema.completion) == ("messages", "prompt", "completion")
    problems: list = []
    sample = check_record(record, schema, problems)
    assert problems == [] and sample.answer == "Blue." and sample.user == "What color is the sky?"
    check_record({"prompt": record["prompt"], "completion": "Blue."}, schema, problems)
    assert problems[0][0] == "data.wrong_type"


def test_forced_format_keeps_the_data_tag_names():
    schema = detect([{"conversations": [{"role": "user", "content": "x"}]}], "sharegpt", "f")
    assert schema.format == "sharegpt" and schema.role == "role" and schema.how == "--format"


def test_alpaca_history_must_be_pairs():
    schema = Schema("alpaca", "t")
    problems: list = []
    sample = check_record({"instruction": "q", "output": "a", "history": [["q0", "a0"], ["q1", "a1"]]}, schema, problems)
    assert problems == [] and sample.turns == 6 and "q0\na0" in sample.prompt
    check_record({"instruction": "q", "output": "a", "history": [["only one"]]}, schema, problems)
    assert problems[0][0] == "data.wrong_type"


@pytest.mark.parametrize("messages,rule", [
    ([{"role": "assistant", "content": "a"}], "data.turn_order"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}],
     "data.turn_order"),
    ([{"role": "user", "content": "a"}], "data.no_assistant_turn"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
     "data.last_turn_not_assistant"),
    ([{"role": "robot", "content": "a"}], "data.unknown_role"),
    ([{"role": "user"}], "data.missing_key"),
    ([{"role": "user", "content": None}], "data.null_value"),
    ([{"role": "user", "content": 3}], "data.wrong_type"),
    ([], "data.no_assistant_turn"),
])
def test_turn_rules(messages, rule):
    problems: list = []
    check_record({"messages": messages}, Schema("messages", "t"), problems)
    assert rule in [p[0] for p in problems]


def test_unexpected_keys_in_small_records():
    problems: list = []
    check_record({"instruction": "q", "output": "a", "ouptut": "b"}, Schema("alpaca", "t"), problems)
    check_record({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                  "mesages": []}, Schema("messages", "t"), problems)
    assert [p for p in problems if p[0] == "data.unexpected_key"] == [
        ("data.unexpected_key", "'ouptut'"), ("data.unexpected_key", "'mesages'")]


def test_a_valid_tool_exchange_passes():
    problems: list = []
    sample = check_record({"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "r", "tool_call_id": "1"}, {"role": "assistant", "content": "done"}]},
        Schema("messages", "t"), problems)
    assert problems == [] and sample.answer == "done" and sample.user == "u"


# --------------------------------------------------------------------------------------------
# text quality


@pytest.mark.parametrize("text,rule", [
    ("It’s fine".encode().decode("cp1252"), "data.mojibake"),
    ("Café crème".encode().decode("latin-1"), "data.mojibake"),
    ("秋天到了".encode().decode("latin-1"), "data.mojibake"),
    ("我们今天去公园散步".encode().decode("gbk", errors="ignore"), "data.mojibake"),
    ("broken \ufffd here", "data.replacement_char"),
    ("这是锟斤拷", "data.replacement_char"),
    ("bell\x07", "data.control_chars"),
    ("esc \x1b[31m red", "data.control_chars"),
    ("<p>Hello</p>", "data.html_remnants"),
    ("Tom&amp;Jerry", "data.html_remnants"),
    ("哈" * 300, "data.repetition"),
    ("Once upon a time " + "the end is near, " * 8, "data.repetition"),
    ("A" + "x" * 10 + " and then " + "I will go on. " * 12 + "The end of a long story, told well.", "data.repetition"),
])
def test_text_defects(text, rule):
    assert rule in [p[0] for p in quality_problems(text)]


@pytest.mark.parametrize("text", [
    "Crème brûlée, naïve café, señor, Ærøskøbing, Straße, Ça va?",
    "Ελληνικά κείμενα και русский текст, עברית, العربية",
    "東京は日本の首都です。ひらがなとカタカナ。",
    "북한산은 서울에 있습니다.",
    "沙家浜的故事发生在江南水乡，涓涓细流汇成江河。",
    "Use `<div>` for blocks:\n```html\n<div class=\"x\">hi</div>\n```",
    "a < b && c > d, x & y",
    "| a | b |\n" + "| --- | --- |\n" * 30,
    "def f(x):\n    return x\n\n" + "".join(f"    y{i} = f({i})\n" for i in range(40)),
    "Tabs\tand\r\nnewlines are fine.",
    "哈哈哈哈哈哈，太好笑了！" + "这个故事讲的是一个人在雨天出门忘了带伞的经历。" * 1 + "结尾很温馨。",
    "Row by row: " + " ".join(f"item {i} costs {i * 3} dollars;" for i in range(30)),
    "Numbers 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26.",
])
def test_text_look_alikes_pass(text):
    assert quality_problems(text) == []


# --------------------------------------------------------------------------------------------
# tokens and scripts


def test_token_estimate_per_script():
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("привет") == 3  # 6 two-byte letters, 2 a token
    assert estimate_tokens("hi 你好") == 3
    assert "no answer token" in truncation(900, 100, 512)
    assert "last 88 of 100" in truncation(500, 100, 512)


@pytest.mark.parametrize("text,script", [
    ("hello", "Latin"), ("你好，世界", "Chinese"), ("こんにちは", "Japanese"), ("안녕하세요", "Korean"),
    ("Привет, мир", "Cyrillic"), ("Élan vital à la française", "Latin"),
])
def test_script_of(text, script):
    assert script_of(text) == script


# --------------------------------------------------------------------------------------------
# duplicates


def test_normalise_matches_split_join_on_any_text():
    rng = random.Random(3)
    alphabet = "aB \t\n\r\x0b\x0c\x1c\x1f\xa0\u3000é你."
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert dedup.normalise(text) == " ".join(text.lower().split())


def test_bands_rows_reach_the_recall_target():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = dedup.bands_rows(threshold)
        assert bands * rows <= dedup.BINS
        assert 1 - (1 - threshold**rows) ** bands >= dedup.RECALL_AT_THRESHOLD
    assert dedup.bands_rows(0.8) == (32, 8)


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(5)
    words = [f"w{i}" for i in range(400)]
    base = " ".join(rng.choice(words) for _ in range(300))
    edited = base.replace(base[100:130], "something else entirely")
    exact = dedup.jaccard(dedup.shingles(base), dedup.shingles(edited))
    sa, sb = dedup.signature(dedup.shingle_hashes(base)), dedup.signature(dedup.shingle_hashes(edited))
    estimate = sum(x == y for x, y in zip(sa, sb)) / dedup.BINS
    assert abs(estimate - exact) < 0.12
    assert dedup.signature({1}) == dedup.signature({1})  # a one-shingle text fills every bin


def _estimate_errors(pairs: list[tuple[str, str]]) -> list[float]:
    out = []
    for a, b in pairs:
        sa, sb = dedup.signature(dedup.shingle_hashes(a)), dedup.signature(dedup.shingle_hashes(b))
        out.append(sum(x == y for x, y in zip(sa, sb)) / dedup.BINS - dedup.jaccard(dedup.shingles(a), dedup.shingles(b)))
    return out


def test_crc_minhash_estimates_jaccard_without_bias():
    """CRC-32 is linear, so its minimums are checked as estimators: on word text, Chinese and
    numbered items (the structure a linear hash could trip on), mean error near 0 and spread near
    the sqrt(J(1-J)/256) ~ 0.025 of truly random hashing."""
    import statistics

    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghiklmnoprstu") for _ in range(rng.randint(2, 7))) for _ in range(3000)]
    zh = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
    corpora: dict[str, list[tuple[str, str]]] = {"words": [], "chinese": [], "numbered": []}
    for _ in range(150):
        text = [rng.choice(words) for _ in range(rng.randint(20, 150))]
        edited = text[:]
        for _ in range(int(len(text) * rng.choice((0.02, 0.05, 0.1, 0.2)))):
            edited[rng.randrange(len(edited))] = rng.choice(words)
        corpora["words"].append((" ".join(text), " ".join(edited)))
        chars = [rng.choice(zh) for _ in range(rng.randint(30, 200))]
        changed = chars[:]
        for _ in range(len(chars) // 20):
            changed[rng.randrange(len(changed))] = rng.choice(zh)
        corpora["chinese"].append(("".join(chars), "".join(changed)))
        base = rng.randint(0, 10**6)
        items = [f"item {base + i:07d} price {rng.randint(1, 99)}.{rng.randint(0, 99):02d}" for i in range(rng.randint(5, 30))]
        moved = items[:]
        moved[rng.randrange(len(moved))] = f"item {rng.randint(0, 9999999):07d} price 1.00"
        corpora["numbered"].append((" ".join(items), " ".join(moved)))
    for name, pairs in corpora.items():
        errors = _estimate_errors(pairs)
        assert abs(statistics.mean(errors)) < 0.01, name
        assert statistics.pstdev(errors) < 0.035, name


def test_band_keys_are_the_same_in_every_process(tmp_path):
    """The candidates must not change between runs: no per-process hash seed in the signature."""
    import subprocess

    script = ("import sys; sys.modules['numpy'] = None\n"
              "from preflight.data import dedup\n"
              "texts = [dedup.normalise(t) for t in ('The quick brown fox jumps over the lazy dog', '北京是中国的首都', 'ab')]\n"
              "index = dedup.LshIndex(*dedup.bands_rows(0.8))\n"
              "index.add_batch([0, 1, 2], texts)\n"
              "print([list(column) for column in index.keys])\n")
    outputs = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1


def _near_corpus() -> list[str]:
    rng = random.Random(11)
    words = [f"{a}{b}" for a in "bcdfghjklmnp" for b in ("a", "e", "io", "ou", "ar", "en")]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) for _ in range(400)]
    texts.append(texts[10] + " one more")  # 400: near 10
    texts.append("北京是中国的首都，有三千多年的建城史和八百多年的建都史。")  # 401
    texts.append("北京是中国的首都，有三千余年的建城史和八百多年的建都史。")  # 402: near 401
    return [dedup.normalise(t) for t in texts]


def _pairs(texts: list[str]) -> set[tuple[int, int]]:
    index = dedup.LshIndex(*dedup.bands_rows(0.8))
    index.add_batch(list(range(len(texts))), texts)
    confirmed = dedup.confirm(index.candidates(), iter(enumerate(texts)), None, 0.8)
    return {(a, b) for a, b, _ in confirmed}


def test_near_duplicates_numpy_path():
    pytest.importorskip("numpy")
    assert _pairs(_near_corpus()) == {(400, 10), (402, 401)}


def test_near_duplicates_pure_python_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)
    assert _pairs(_near_corpus()) == {(400, 10), (402, 401)}


def test_candidates_against_another_split():
    texts = _near_corpus()
    train = dedup.LshIndex(*dedup.bands_rows(0.8))
    train.add_batch(list(range(400)), texts[:400])
    held_out = dedup.LshIndex(*dedup.bands_rows(0.8))
    held_out.add_batch([0, 1], [texts[400], texts[401]])
    pairs = held_out.candidates_against(train)
    confirmed = dedup.confirm(pairs, iter([(0, texts[400]), (1, texts[401])]), iter(enumerate(texts[:400])), 0.8)
    assert [(a, b) for a, b, _ in confirmed] == [(0, 10)]


# --------------------------------------------------------------------------------------------
# the fast paths give what the plain code gives


@pytest.mark.parametrize("line", [
    b'{"a": 1}\n', b'{"a": 1}', b'{"a": 1} \r\n', b'{"a": 1} x\n', b'{"a": 1}{"b": 2}\n', b'{"a": \n', b"{", b"{}",
    b'{"a": NaN, "b": -Infinity}\n', b'{"a": "\xff"}\n', b'{"a": "\xed\xa0\x80"}\n', b'\xef\xbb\xbf{"a": 1}\n',
    '{"a": 1}\n'.encode("utf-16-le"), '{"a": 1}\n'.encode("utf-32"), b' {"a": 1}\n', b"[1, 2]\n", b"\n",
    b'{"a": "\\ud800"}\n', b'{"a": 1}\x0b\n', b'{"a": 1}\xc2\xa0\n', b'{"a": 1.0e400, "b": 12345678901234567890}\n',
    b'{"a": "caf\xc3\xa9 \xe4\xb8\xad"}\n', b'{"a": [' * 3000 + b"]" * 3000 + b"}\n",
])
def test_std_loads_is_json_loads(line):
    def outcome(loads):
        try:
            return "value", repr(loads(line))
        except RecursionError:
            return "RecursionError", ""
        except ValueError as exc:
            return type(exc).__name__, str(exc)

    assert outcome(readers._std_parse) == outcome(json.loads)  # (_std_loads also refuses lone surrogates)


def _runaway_reference(text: str) -> str:
    """runaway_repetition() as first written: unbounded searches, both probes through _loop_at."""
    from preflight.data import text_quality as tq

    body = text.rstrip() if text[-1:].isspace() else text
    n = len(body)
    starts = [n // 2]
    before = body.rfind(body[n - tq.REPEAT_PROBE:], 0, n - 1)
    if before >= 0:
        starts.insert(0, before)
    for start in starts:
        probe = body[start:start + tq.REPEAT_PROBE]
        following = body.find(probe, start + 1)
        if len(probe) < tq.REPEAT_PROBE or following < 0 or following - start > tq.REPEAT_MAX_PERIOD:
            continue
        found = tq._loop_at(body, start)
        if found:
            return found
    return ""


def test_runaway_repetition_bounded_search_finds_the_same():
    from preflight.data.text_quality import runaway_repetition

    rng = random.Random(9)
    for _ in range(4000):
        unit = "".join(rng.choice("ab c.") for _ in range(rng.choice((1, 3, 20, 21, 60, 380, 399, 400, 401, 420))))
        text = ("".join(rng.choice("abcd e") for _ in range(rng.randint(0, 900))) + unit * rng.randint(1, 9)
                + "".join(rng.choice("abcd e") for _ in range(rng.randint(0, 900))) + rng.choice(("", "  \n")))
        if len(text) >= 100:
            assert runaway_repetition(text) == _runaway_reference(text)


def test_normalise_ascii_path_is_split_and_join():
    rng = random.Random(4)
    for _ in range(3000):
        text = "".join(rng.choice("aZ b\t\n\r\x0b\x0c\x1c\x1f.Q") for _ in range(rng.randint(0, 80)))
        assert dedup.normalise(text) == " ".join(text.lower().split())


def _signature_reference(hashes) -> list[int]:
    """signature() as first written: a bin at a time, every try in Python."""
    firsts: dict[int, int] = {}
    for h in sorted(hashes, reverse=True):
        firsts[h >> (32 - dedup.BIN_BITS)] = h
    values = [firsts.get(b) for b in dedup._BIN_IDS]
    filled = values[:]
    for i, v in enumerate(values):
        if v is not None:
            continue
        for attempt, order in enumerate(dedup._PROBE_ORDER):
            if values[order[i]] is not None:
                filled[i] = hash((values[order[i]], attempt))
                break
        else:
            for distance in range(1, dedup.BINS):
                if values[(i + distance) % dedup.BINS] is not None:
                    filled[i] = hash((values[(i + distance) % dedup.BINS], dedup.PROBES + distance - 1))
                    break
    return filled


def test_pure_python_signature_matches_the_reference(monkeypatch):
    rng = random.Random(3)
    texts = ["a", "abcde", "abcdef", "北京", "北京是中国的首都", "x" * 7]
    texts += [" ".join(rng.choice(("ka", "tiro", "mesu", "navo", "pi")) for _ in range(rng.randint(1, 400)))
              for _ in range(150)]
    bands, rows = dedup.bands_rows(0.8)
    monkeypatch.setitem(sys.modules, "numpy", None)
    index = dedup.LshIndex(bands, rows)
    index.add_batch(list(range(len(texts))), texts)
    for k, text in enumerate(texts):
        hashes = {zlib.crc32(w) for w in dedup.shingles(text)}
        sig = _signature_reference(hashes)
        assert dedup.signature(hashes) == sig
        assert set(dedup.shingle_hashes(text)) == hashes
        assert [column[k] for column in index.keys] == [
            hash(tuple(sig[band::bands][:rows])) & 0xFFFFFFFF for band in range(bands)]


def _edited_corpus() -> tuple[list[str], set[tuple[int, int]]]:
    """Texts with copies edited clearly within the threshold (Jaccard >= 0.9) or clearly outside
    it (<= 0.6), so that neither signer can miss or add a pair by chance."""
    rng = random.Random(21)
    words = [a + b + c for a in "bdfgklmnprst" for b in "aeiou" for c in ("", "n", "r", "s")]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(40, 150))) for _ in range(300)]
    texts += ["北京是中国的首都，有三千多年的建城史和八百多年的建都史，是全国的政治中心和文化中心，也是国际交往中心。"]
    texts += [texts[300].replace("和八百多年", "和八百余年")]  # 301: near 300
    for i in range(0, 300, 7):
        base = texts[i]
        cut = rng.randrange(len(base) // 2)
        if i % 2:  # a few words changed: a near-duplicate
            texts.append(base[:cut] + " zzq " + base[cut + 3:])
        else:  # half of it replaced: not one
            texts.append(base[:len(base) // 2] + " " + texts[(i + 1) % 300][len(texts[(i + 1) % 300]) // 2:])
    texts = [dedup.normalise(t) for t in texts]
    expected = set()
    for a in range(301, len(texts)):
        for b in range(a):
            j = dedup.jaccard(dedup.shingles(texts[a]), dedup.shingles(texts[b]))
            assert j >= 0.9 or j <= 0.6, (a, b, j)  # the corpus keeps away from the threshold
            if j >= 0.8:
                expected.add((a, b))
    return texts, expected


def test_pure_python_and_numpy_signers_confirm_the_same_pairs(monkeypatch):
    pytest.importorskip("numpy")
    texts, expected = _edited_corpus()
    assert len(expected) >= 15
    with_numpy = _pairs(texts)
    monkeypatch.setitem(sys.modules, "numpy", None)
    assert _pairs(texts) == with_numpy == expected
