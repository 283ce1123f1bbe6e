"""The config readers: the block-YAML reader agrees with PyYAML on real configs and knows every
key's line; JSON keys get their lines; each file's kind is detected; bad input is one InputError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from config_kit import CONFIGS, line_of
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from preflight.errors import InputError
from preflight.trainconfig.readers import (
    detect_kind,
    estimate_params,
    read_config,
    read_model_config,
)
from preflight.trainconfig.yaml_lines import parse_yaml

YAML_FIXTURES = sorted(p for p in CONFIGS.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.parametrize("path", YAML_FIXTURES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_yaml_reader_agrees_with_pyyaml(path: Path) -> None:
    text = path.read_text()
    assert parse_yaml(text, str(path)).data == yaml.safe_load(text)


@pytest.mark.parametrize("path", YAML_FIXTURES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_top_level_key_has_its_line(path: Path) -> None:
    doc = parse_yaml(path.read_text(), str(path))
    for key in doc.data:
        assert doc.lines[(key,)] == line_of(path, f"{key}:"), key


def test_nested_keys_sequences_flow_and_block_scalars() -> None:
    text = (
        "deepspeed_config:\n"
        "  zero_stage: 3   # comment\n"
        "  offload_param_device: cpu\n"
        "datasets:\n"
        "  - path: a/b\n"
        "    type: alpaca\n"
        "  - path: 'c: d'\n"
        "targets: [q_proj, \"v_proj\", 3, 1.5e-4, null]\n"
        "chat: |\n"
        "  {{ x }}\n"
        "   indented\n"
        "after: yes\n"
        "empty:\n"
    )
    doc = parse_yaml(text, "t.yaml")
    assert doc.data == yaml.safe_load(text) | {"targets": ["q_proj", "v_proj", 3, 1.5e-4, None]}
    assert doc.lines[("deepspeed_config", "zero_stage")] == 2
    assert doc.lines[("datasets", "1", "path")] == 7
    assert doc.lines[("after",)] == 12


def test_scientific_notation_is_a_float_unlike_yaml11() -> None:
    # PyYAML keeps "1e-4" a string (YAML 1.1 needs a dot); the frameworks coerce it to a float
    assert parse_yaml("learning_rate: 1e-4\n", "t").data == {"learning_rate": 1e-4}
    assert parse_yaml("learning_rate: 1.0e-4\n", "t").data == yaml.safe_load("learning_rate: 1.0e-4\n")


def test_duplicate_yaml_keys_are_recorded_and_the_last_wins() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n", "t")
    assert doc.data == {"a": 3, "b": 2}
    assert doc.duplicates == [(("a",), 1, 3)]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("a: 1\n\tb: 2\n", 2, "tab"),
    ("a: &x 1\nb: *x\n", 1, "anchors"),
    ("a: 1\n  b: 2\n", 2, "indentation"),
    ("a: [1, 2\n", 1, "unclosed"),
    ("a: 'open\n", 1, "unterminated"),
    ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
    ("just text\n", None, "mapping"),
    ("key without colon\nstage: sft\n", 1, "expected 'key: value', got 'key without colon'"),
    ("# header\nlearning_rate 1e-4\nstage: sft\n", 2, "expected 'key: value'"),
    ("stage: sft\nlearning_rate 1e-4\n", 2, "expected 'key: value'"),
])
def test_yaml_errors_name_the_line(tmp_path: Path, text: str, line: int | None, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_config(path)
    assert words in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}:" if line else f"{path}:")


def test_json_keys_get_their_lines() -> None:
    cfg = read_config(CONFIGS / "examples/deepspeed/ds_z3_offload_config.json")
    assert cfg.kind == "deepspeed"
    path = cfg.path
    assert cfg.line("zero_optimization", "stage") == line_of(path, '"stage": 3')
    assert cfg.line("zero_optimization", "offload_param", "device") == line_of(path, '"offload_param"') + 1
    assert cfg.line("train_batch_size") == 2


def test_json_duplicate_keys_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text('{\n  "train_batch_size": 8,\n  "zero_optimization": {"stage": 2},\n  "train_batch_size": 16\n}\n')
    cfg = read_config(path)
    assert cfg.duplicates == [(("train_batch_size",), 2, 4)]
    path.write_text('{\n  "train_batch_size": 8,\n  "zero_optimization": {"stage": 2,}\n}\n')
    with pytest.raises(InputError, match=rf"^{path}:3: invalid JSON"):
        read_config(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_config(path)


@pytest.mark.parametrize(("relative", "kind"), [
    ("examples/train_lora/qwen3_lora_sft.yaml", "llamafactory"),
    ("examples/train_full/qwen3_full_sft.yaml", "llamafactory"),
    ("examples/deepspeed/ds_z2_config.json", "deepspeed"),
    ("axolotl/lora-1b.yml", "axolotl"),
    ("axolotl/qlora.yml", "axolotl"),
    ("accelerate/multi_node.yaml", "accelerate"),
    ("accelerate/deepspeed_zero2.yaml", "accelerate"),
    ("hf/training_args.json", "hf"),
    ("hf/alpaca_train.json", "hf"),
])
def test_kinds_are_detected(relative: str, kind: str) -> None:
    assert read_config(CONFIGS / relative).kind == kind


def test_unknown_kind_empty_and_binary_files(tmp_path: Path) -> None:
    assert detect_kind({"name": "x", "colour": "red"}) is None
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ncolour: red\n")
    with pytest.raises(InputError, match="cannot tell what kind"):
        read_config(path)
    path.write_text("# only a comment\n")
    with pytest.raises(InputError, match="empty config"):
        read_config(path)
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(InputError, match=rf"^{path}:1: not UTF-8"):
        read_config(path)
    with pytest.raises(InputError, match="no such file"):
        read_config(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="is a directory"):
        read_config(tmp_path)


def test_model_config_and_parameter_estimate() -> None:
    model = read_model_config(CONFIGS / "models/tinyllama")
    assert model is not None
    assert model.torch_dtype == "bfloat16"
    assert model.max_position_embeddings == 2048
    assert model.params is not None and 1.0e9 < model.params < 1.2e9  # TinyLlama is 1.1B
    assert estimate_params({"hidden_size": 8}) is None
    assert read_model_config(CONFIGS / "hf") is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("ab:- \n\t#'\"[]{},|>&*!0123456789.e~")), max_size=120))
def test_yaml_reader_never_crashes(text: str) -> None:
    try:
        parse_yaml(text, "fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml")


SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=False, allow_infinity=False, width=32)
           | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12))
KEYS = st.from_regex(r"[a-z_][a-z0-9_.]{0,10}", fullmatch=True)
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                    max_leaves=10)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, DOCS, min_size=1, max_size=6))
def test_reader_matches_pyyaml_on_what_pyyaml_writes(data):
    # the one deliberate difference: "1e5"-like strings are floats here (YAML 1.2), strings in PyYAML
    assume(not any(isinstance(v, str) and re.fullmatch(r"[-+]?[0-9_]*\.?[0-9_]*[eE][-+]?[0-9]+", v)
                   for v in _leaves(data)))
    text = yaml.safe_dump(data, default_flow_style=False, allow_unicode=True, sort_keys=False)
    assert parse_yaml(text, "gen.yaml").data == yaml.safe_load(text)
