"""`preflight config` end to end through ``preflight.cli.main``: no findings on the frameworks' own
examples, exit codes, ``--json``, ``--strict``, the terminal tables, and arbitrary bytes in a
config file giving findings or one clean error line, never a traceback."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from config_kit import CONFIGS, FACTS, copy_config, problems, run_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.cli import main

H100 = FACTS / "h100_sxm_8x.json"

CLEAN = [
    ("examples/train_lora/qwen3_lora_sft_eval.yaml",),
    ("examples/train_full/qwen3_full_sft.yaml",),
    ("examples/train_full/qwen3_full_sft.yaml", "accelerate/multi_node.yaml"),
    ("axolotl/lora-1b.yml",),
    ("axolotl/qlora.yml",),
    ("accelerate/multi_node.yaml",),
    ("accelerate/deepspeed_zero2.yaml",),
    ("hf/training_args.json",),
    ("examples/deepspeed/ds_z2_config.json", "examples/deepspeed/ds_z3_offload_config.json"),
]


@pytest.mark.parametrize("files", CLEAN, ids=lambda f: "+".join(Path(x).name for x in f))
def test_published_examples_have_no_findings(files, capsys, monkeypatch):
    monkeypatch.chdir(CONFIGS)
    code, doc = run_config(capsys, *files, "--facts", H100)
    assert problems(doc) == {}
    assert code == 0 and doc["verdict"]["status"] in ("pass", "skip")


def test_the_verbatim_lora_example_only_lacks_evaluation(capsys):
    code, doc = run_config(capsys, CONFIGS / "examples/train_lora/qwen3_lora_sft.yaml", "--facts", H100)
    assert problems(doc) == {"config.no_eval": ["warn"]}
    assert code == 0
    assert main(["config", str(CONFIGS / "examples/train_lora/qwen3_lora_sft.yaml"), "--facts", str(H100),
                 "--strict", "--json"]) == 1
    capsys.readouterr()


def test_json_document(capsys, monkeypatch):
    monkeypatch.chdir(CONFIGS)
    code, doc = run_config(capsys, "examples/train_full/qwen3_full_sft.yaml", "accelerate/multi_node.yaml",
                           "--facts", H100)
    assert doc["schema_version"] == 1 and doc["command"] == "config"
    assert [(f["path"], f["kind"]) for f in doc["files"]] == [
        ("examples/train_full/qwen3_full_sft.yaml", "llamafactory"),
        ("accelerate/multi_node.yaml", "accelerate"),
        ("examples/deepspeed/ds_z3_config.json", "deepspeed"),
    ]
    assert doc["world_size"]["value"] == 16 and "num_processes" in doc["world_size"]["from"]
    assert doc["hardware"]["compute_capability"] == "9.0" and doc["hardware"]["gpus_per_node"] == 8
    for f in doc["findings"]:
        assert f["id"].startswith("config.") and f["status"] in ("pass", "warn", "fail", "skip")
        if f["line"] is not None:
            assert f["node"] == f"{f['file']}:{f['line']}"
    assert doc["verdict"] == {"status": "pass", "exit_code": code}


def test_terminal_output_groups_findings_by_file(capsys):
    path = CONFIGS / "examples/train_lora/qwen3_lora_sft_eval.yaml"
    code = main(["config", str(path), "--facts", str(FACTS / "v100_16gb.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{path}: LLaMA-Factory config\n" in out  # never wrapped, however long the checkout path
    assert "config.bf16_unsupported" in out and "fix:" in out and "1 failed" in out


def test_input_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: sft\nfinetuning_type: lora\n  cutoff_len: 1024\n")
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:3:" in err
    assert main(["config", str(CONFIGS / "hf/training_args.json"), "--gpu", "Voodoo5"]) == 2
    assert "GPU 'Voodoo5'" in capsys.readouterr().err
    assert main(["config", str(CONFIGS / "hf/training_args.json"), "--only", "config.nope"]) == 2
    assert "unknown check id" in capsys.readouterr().err
    broken_ds = tmp_path / "ds.json"
    broken_ds.write_text("{ not json")
    lf = tmp_path / "lf.yaml"
    lf.write_text("stage: sft\nfinetuning_type: full\ndeepspeed: ds.json\n")
    assert main(["config", str(lf)]) == 2
    err = capsys.readouterr().err
    assert f"{broken_ds}:1" in err and f"named by {lf}:3" in err


def test_only_and_skip(capsys):
    path = CONFIGS / "examples/train_lora/qwen3_lora_sft_eval.yaml"
    _, doc = run_config(capsys, path, "--gpu", "V100", "--only", "config.bf16_*")
    assert {f["id"] for f in doc["findings"]} == {"config.bf16_unsupported"}
    code, doc = run_config(capsys, path, "--gpu", "V100", "--skip", "config.bf16_unsupported")
    assert "config.bf16_unsupported" not in {f["id"] for f in doc["findings"]} and code == 0


def test_configs_are_never_modified(tmp_path, capsys):
    files = [copy_config(tmp_path, rel) for rel in ("examples/train_full/qwen3_full_sft.yaml",
                                                     "examples/deepspeed/ds_z3_config.json")]
    files[0].write_text(files[0].read_text().replace("examples/deepspeed/ds_z3_config.json", "ds_z3_config.json"))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    run_config(capsys, files[0], "--facts", H100)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()} == before


def test_module_import_is_light():
    code = ("import sys, preflight.trainconfig.command as c; "
            "heavy = [m for m in ('rich', 'packaging', 'preflight.compat', 'preflight.trainconfig.readers') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["config", "--help"])
    assert "--facts" in capsys.readouterr().out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".json", ".yml"]))
def test_arbitrary_bytes_never_crash(tmp_path, capsys, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    code = main(["config", str(path), "--gpu", "H100", "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), err
    if code == 2:
        assert err.startswith("preflight: error: ") and err.count("\n") == 1
    else:
        json.loads(out)


CONFIG_WORDS = ["stage: sft", "finetuning_type: lora", "bf16: true", "fp16: yes", "learning_rate: 2e-4",
                "per_device_train_batch_size: 0", "gradient_accumulation_steps: -3", "deepspeed: x.json",
                "num_processes: 16", "num_machines: 0", "distributed_type: MULTI_GPU", "lora_rank: [1]",
                "lora_alpha: {a: 1}", "eval_strategy: steps", "save_steps: 0.5", "eval_steps: 0",
                "load_best_model_at_end: true", "cutoff_len: -1", "micro_batch_size: 2", "base_model: m",
                "adapter: qlora", "zero_optimization:", "  stage: 7", "  offload_param:", "    device: cpu",
                "lr_scheduler_type: ~", "num_train_epochs: .inf", "val_size: nan", "- a", "  - b: 1"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from(CONFIG_WORDS), min_size=1, max_size=12))
def test_config_shaped_nonsense_never_crashes(tmp_path, capsys, lines):
    path = tmp_path / "fuzz.yaml"
    path.write_text("\n".join(lines) + "\n")
    code = main(["config", str(path), "--gpu", "V100", "--nnodes", "2", "--gpus", "8", "--train-samples", "50",
                 "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), err
    if code == 2:
        assert err.count("\n") == 1
    else:
        json.loads(out)


KEYS = ["stage", "finetuning_type", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
        "bf16", "fp16", "tf32", "pure_bf16", "num_train_epochs", "max_steps", "warmup_ratio", "warmup_steps",
        "lr_scheduler_type", "eval_strategy", "evaluation_strategy", "eval_steps", "save_strategy", "save_steps",
        "logging_steps", "load_best_model_at_end", "cutoff_len", "val_size", "do_eval", "lora_rank", "lora_alpha",
        "use_rslora", "quantization_bit", "max_samples", "deepspeed", "model_name_or_path", "output_dir",
        "train_batch_size", "train_micro_batch_size_per_gpu", "zero_optimization", "optimizer", "scheduler",
        "num_processes", "num_machines", "distributed_type", "mixed_precision", "deepspeed_config",
        "base_model", "micro_batch_size", "sequence_len", "adapter", "lora_r", "val_set_size", "num_epochs",
        "early_stopping_patience", "test_datasets", "stage3_x", "offload_param", "device", "ratio", "enabled",
        "params", "lr", "warmup_num_steps", "fp16_master_weights_and_grads"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["auto", "no", "steps", "epoch", "best", "cpu", "nvme", "lora", "qlora", "full", "bf16",
                       "fp16", "cosine", "reduce_lr_on_plateau", "1e-4", "x.json", "", "3"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=10),
       extra=st.lists(st.sampled_from(["--nnodes", "--gpus", "--train-samples", "--params"]), max_size=2))
def test_config_shaped_json_never_crashes(tmp_path, capsys, config, extra):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(config))
    args = [a for flag in extra for a in (flag, "3")]
    code = main(["config", str(path), "--facts", str(FACTS / "v100_16gb.json"), *args, "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), err
    if code == 2:
        assert err.count("\n") == 1
    else:
        json.loads(out)


@pytest.mark.parametrize("value", ['"\\0x.json"', "x" * 5000, "~nosuchuser_zz/ds.json"])
def test_unusable_deepspeed_paths_are_findings(tmp_path, capsys, value):
    path = tmp_path / "lf.yaml"
    path.write_text(f"stage: sft\nfinetuning_type: full\ndeepspeed: {value}\n")
    code, doc = run_config(capsys, path, "--gpu", "H100")
    assert code == 1 and [f["status"] for f in doc["findings"] if f["id"] == "config.deepspeed_file"] == ["fail"]


def test_the_same_file_twice_is_judged_once(capsys):
    path = CONFIGS / "examples/train_lora/qwen3_lora_sft_eval.yaml"
    _, doc = run_config(capsys, path, path, "--gpu", "H100")
    assert len(doc["files"]) == 1


def test_facts_with_a_malformed_compute_capability(tmp_path, capsys):
    data = json.loads((FACTS / "t4_cloud_vm.json").read_text())
    data["gpu"]["devices"][0]["compute_capability"] = "seven"
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(data))
    assert main(["config", str(CONFIGS / "hf/training_args.json"), "--facts", str(facts)]) == 2
    assert f"{facts}: GPU compute capability 'seven'" in capsys.readouterr().err


def test_findings_of_a_deepspeed_file_alone_are_under_its_own_name(tmp_path, capsys):
    # a skip with no line used to be filed under a made-up "(configs)" heading
    ds = tmp_path / "ds.json"
    ds.write_text('{"train_batch_size": 64, "zero_optimization": {"stage": 2}}\n')
    code = main(["config", str(ds), "--gpu", "H100"])
    out = capsys.readouterr().out
    assert code == 0 and "(configs)" not in out
    code, doc = run_config(capsys, ds, "--gpu", "H100")
    assert {f["file"] for f in doc["findings"]} == {str(ds)}
