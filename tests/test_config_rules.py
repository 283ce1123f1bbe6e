"""Each `preflight config` rule: a planted defect found at its file:line (positive), and the clean
config it was planted in passing (negative)."""

from __future__ import annotations

import json
from pathlib import Path

from config_kit import (
    CONFIGS,
    FACTS,
    by_id,
    copy_config,
    edit_yaml,
    line_of,
    problems,
    run_config,
    statuses,
    write_json,
)

LORA = "examples/train_lora/qwen3_lora_sft_eval.yaml"
FULL = "examples/train_full/qwen3_full_sft.yaml"
H100 = FACTS / "h100_sxm_8x.json"
V100 = FACTS / "v100_16gb.json"
T4 = FACTS / "t4_cloud_vm.json"


def _full_with_ds(tmp_path: Path, ds: dict | None = None, **replace: str | None) -> tuple[Path, Path]:
    """The LLaMA-Factory full-SFT example next to a copy of its ZeRO-3 config (``deepspeed:``
    rewritten to the copy), with top-level keys replaced."""
    ds_path = tmp_path / "ds.json"
    data = json.loads((CONFIGS / "examples/deepspeed/ds_z3_config.json").read_text())
    if ds:
        data.update(ds)
    write_json(ds_path, data)
    yaml_path = edit_yaml(copy_config(tmp_path, FULL), {"deepspeed": "ds.json", **replace})
    return yaml_path, ds_path


def _hf(tmp_path: Path, **settings: object) -> Path:
    data = json.loads((CONFIGS / "hf/training_args.json").read_text())
    for key, value in settings.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return write_json(tmp_path / "training_args.json", data)


# -- batch ---------------------------------------------------------------------------------------
def test_deepspeed_batch_identity_fails_with_the_world_size(tmp_path, capsys):
    ds = write_json(tmp_path / "ds.json", {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4,
                                           "gradient_accumulation_steps": 4, "zero_optimization": {"stage": 2}})
    code, doc = run_config(capsys, ds, "--nnodes", "1", "--gpus", "8")
    [f] = [f for f in by_id(doc, "config.batch_arithmetic") if f["status"] == "fail"]
    assert code == 1
    assert f["node"] == f"{ds}:2" and "4 × 4 × 8 = 128" in f["observed"]
    code, doc = run_config(capsys, ds, "--nnodes", "1", "--gpus", "4")
    assert statuses(doc, "config.batch_arithmetic") == ["pass"]
    assert by_id(doc, "config.batch_arithmetic")[0]["evidence"]["global_batch"] == 64


def test_deepspeed_batch_without_a_world_size_that_fits(tmp_path, capsys):
    ds = write_json(tmp_path / "ds.json", {"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4,
                                           "gradient_accumulation_steps": 1})
    _, doc = run_config(capsys, ds, "--gpu", "H100")
    assert statuses(doc, "config.batch_arithmetic") == ["fail"]
    assert "no world size" in by_id(doc, "config.batch_arithmetic")[0]["observed"]


def test_deepspeed_value_disagreeing_with_the_trainer_fails(tmp_path, capsys):
    yaml_path, ds_path = _full_with_ds(tmp_path, {"train_micro_batch_size_per_gpu": 4})
    _, doc = run_config(capsys, yaml_path, "--facts", H100)
    [f] = by_id(doc, "config.batch_arithmetic")
    assert f["status"] == "fail"
    assert f["node"] == f"{ds_path}:{line_of(ds_path, 'train_micro_batch_size_per_gpu')}"
    assert '"train_micro_batch_size_per_gpu": "auto"' in f["remediation"]


def test_auto_values_follow_the_trainer(tmp_path, capsys):
    yaml_path, _ = _full_with_ds(tmp_path)
    code, doc = run_config(capsys, yaml_path, "--facts", H100)
    [f] = by_id(doc, "config.batch_arithmetic")
    assert (f["status"], f["evidence"]["global_batch"]) == ("pass", 1 * 2 * 8)
    assert f["node"] == f"{yaml_path}:{line_of(yaml_path, 'per_device_train_batch_size')}"
    assert code == 0


def test_accelerate_floors_processes_over_machines(tmp_path, capsys):
    acc = edit_yaml(copy_config(tmp_path, "accelerate/multi_node.yaml"), {"num_machines": "3"})
    code, doc = run_config(capsys, acc, "--gpu", "H100")
    [f] = by_id(doc, "config.accelerate_processes")
    assert code == 1 and f["status"] == "fail"
    assert f["node"] == f"{acc}:{line_of(acc, 'num_processes')}"
    assert "5 per machine, 15 in all" in f["observed"] and "num_processes: 15 or 18" in f["remediation"]
    _, doc = run_config(capsys, CONFIGS / "accelerate/multi_node.yaml", "--gpu", "H100")
    assert statuses(doc, "config.accelerate_processes") == ["pass"]


def test_accelerate_more_processes_than_gpus(tmp_path, capsys):
    _, doc = run_config(capsys, CONFIGS / "accelerate/multi_node.yaml", "--facts", T4)
    [f] = by_id(doc, "config.accelerate_processes")
    assert f["status"] == "fail" and "shows 1 GPU" in f["observed"]


def test_too_few_steps_per_epoch(capsys):
    _, doc = run_config(capsys, CONFIGS / FULL, "--facts", H100, "--train-samples", "100")
    [f] = by_id(doc, "config.steps_per_epoch")
    assert f["status"] == "warn" and "= 7 optimizer step(s)" in f["observed"]
    _, doc = run_config(capsys, CONFIGS / FULL, "--facts", H100)  # max_samples: 1000 -> 63 steps
    assert statuses(doc, "config.steps_per_epoch") == ["pass"]
    _, doc = run_config(capsys, CONFIGS / FULL, "--gpu", "H100")
    assert statuses(doc, "config.steps_per_epoch") == ["skip"]


# -- precision -----------------------------------------------------------------------------------
def test_bf16_on_v100_fails_at_the_bf16_line(capsys):
    path = CONFIGS / LORA
    code, doc = run_config(capsys, path, "--facts", V100)
    [f] = by_id(doc, "config.bf16_unsupported")
    assert code == 1 and f["status"] == "fail"
    assert (f["file"], f["line"]) == (str(path), line_of(path, "bf16: true"))
    assert "set bf16: false and fp16: true" in f["remediation"]
    _, doc = run_config(capsys, path, "--facts", H100)
    assert statuses(doc, "config.bf16_unsupported") == ["pass"]


def test_axolotl_bfloat16_key_counts_and_auto_follows_the_gpu(tmp_path, capsys):
    # axolotl check_bf16: raises for ``bf16 is True or bfloat16 is True``; ``auto`` follows the GPU
    auto = CONFIGS / "axolotl/lora-1b.yml"  # bf16: auto
    _, doc = run_config(capsys, auto, "--facts", V100)
    assert statuses(doc, "config.bf16_unsupported") == ["pass"]  # nothing asks for bf16 outright
    pure = edit_yaml(copy_config(tmp_path, "axolotl/lora-1b.yml"), {"bf16": "false"}, append="bfloat16: true\n")
    _, doc = run_config(capsys, pure, "--facts", V100)
    [f] = by_id(doc, "config.bf16_unsupported")
    assert f["status"] == "fail" and f["line"] == line_of(pure, "bfloat16: true")
    assert "set bfloat16: false" in f["remediation"]
    _, doc = run_config(capsys, pure, "--facts", H100)
    assert statuses(doc, "config.bf16_unsupported") == ["pass"]


def test_bf16_in_accelerate_and_deepspeed_on_t4(tmp_path, capsys):
    ds = write_json(tmp_path / "ds.json", {"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": True}})
    _, doc = run_config(capsys, CONFIGS / "accelerate/deepspeed_zero2.yaml", ds, "--gpu", "T4")
    where = {f["file"] for f in by_id(doc, "config.bf16_unsupported")}
    assert statuses(doc, "config.bf16_unsupported") == ["fail", "fail"]
    assert where == {str(CONFIGS / "accelerate/deepspeed_zero2.yaml"), str(ds)}


def test_deepspeed_legacy_bfloat16_key_counts_as_bf16(tmp_path, capsys):
    """DeepSpeed still reads ``"bfloat16"`` when ``"bf16"`` is absent (precision_config.py
    BFLOAT16_OLD); a ``"bf16"`` block wins over it."""
    ds = write_json(tmp_path / "ds.json", {"train_micro_batch_size_per_gpu": 1, "bfloat16": {"enabled": True}})
    _, doc = run_config(capsys, ds, "--gpu", "V100")
    [f] = by_id(doc, "config.bf16_unsupported")
    assert f["status"] == "fail" and f["line"] == line_of(ds, "\"enabled\"") and 'set "bfloat16": {"enabled": false}' in f["remediation"]
    _, doc = run_config(capsys, ds, "--gpu", "A100")
    assert statuses(doc, "config.bf16_unsupported") == ["pass"]
    both = write_json(tmp_path / "both.json", {"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": True},
                                               "bfloat16": {"enabled": True}})
    _, doc = run_config(capsys, both, "--gpu", "H100")
    assert statuses(doc, "config.fp16_bf16_both") == ["fail"]
    shadowed = write_json(tmp_path / "shadow.json", {"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": False},
                                                     "bfloat16": {"enabled": True}})
    _, doc = run_config(capsys, shadowed, "--gpu", "V100")
    [f] = by_id(doc, "config.bf16_unsupported")
    assert f["status"] == "pass" and f["line"] is None  # nothing asks for bf16


def test_precision_rules_skip_without_a_gpu(capsys):
    _, doc = run_config(capsys, CONFIGS / LORA, "--facts", FACTS / "no_gpu.json")
    assert statuses(doc, "config.bf16_unsupported") == ["skip"]


def test_tf32_needs_ampere(tmp_path, capsys):
    path = CONFIGS / "hf/training_args.json"
    _, doc = run_config(capsys, path, "--gpu", "V100")
    [f] = by_id(doc, "config.tf32_unsupported")
    assert f["status"] == "fail" and f["line"] == line_of(path, '"tf32"')
    _, doc = run_config(capsys, path, "--gpu", "A100")
    assert statuses(doc, "config.tf32_unsupported") == ["pass"]


def test_fp16_and_bf16_both_on(tmp_path, capsys):
    path = _hf(tmp_path, fp16=True)
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.fp16_bf16_both")
    assert f["status"] == "fail" and f["line"] == line_of(path, '"fp16"')
    ds = write_json(tmp_path / "ds.json", {"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": True},
                                           "bf16": {"enabled": True}})
    _, doc = run_config(capsys, ds, "--gpu", "H100")
    assert statuses(doc, "config.fp16_bf16_both") == ["fail"]
    _, doc = run_config(capsys, CONFIGS / "hf/training_args.json", "--gpu", "H100")
    assert statuses(doc, "config.fp16_bf16_both") == ["pass"]


def test_deepspeed_precision_disagreeing_with_the_trainer(tmp_path, capsys):
    yaml_path, ds_path = _full_with_ds(tmp_path, {"fp16": {"enabled": True}, "bf16": {"enabled": False}})
    _, doc = run_config(capsys, yaml_path, "--facts", H100)
    found = by_id(doc, "config.fp16_bf16_both")
    assert [f["status"] for f in found] == ["fail", "fail"]
    assert all(f["file"] == str(ds_path) for f in found)


def test_fp16_on_a_bf16_pretrained_model(tmp_path, capsys):
    model_dir = tmp_path / "tinyllama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((CONFIGS / "models/tinyllama/config.json").read_text())
    path = _hf(tmp_path, bf16=False, tf32=None, fp16=True, model_name_or_path="tinyllama")
    _, doc = run_config(capsys, path, "--gpu", "V100")
    [f] = by_id(doc, "config.fp16_on_bf16_model")
    assert f["status"] == "warn" and f["line"] == line_of(path, '"fp16"')
    path = _hf(tmp_path, model_name_or_path="tinyllama")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.fp16_on_bf16_model") == ["pass"]  # nothing to say: bf16 is used


# -- schedule ------------------------------------------------------------------------------------
def test_lora_rate_in_full_fine_tuning(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, FULL), {"learning_rate": "2.0e-4", "deepspeed": None})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.lr_vs_method")
    assert f["status"] == "warn" and f["line"] == line_of(path, "learning_rate")
    assert "set learning_rate: 2.0e-5" in f["remediation"]
    _, doc = run_config(capsys, CONFIGS / FULL, "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["pass"]


def test_full_fine_tuning_rate_on_lora(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, LORA), {"learning_rate": "1.0e-6"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["warn"]
    _, doc = run_config(capsys, CONFIGS / "axolotl/lora-1b.yml", "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["pass"]


def test_max_samples_caps_each_llamafactory_dataset(tmp_path, capsys):
    # data/loader.py truncates every dataset to max_samples before merging them
    one = edit_yaml(copy_config(tmp_path, LORA, "one.yaml"), {"dataset": "alpaca_en_demo", "max_samples": "40",
                                                             "per_device_train_batch_size": "1",
                                                             "gradient_accumulation_steps": "8"})
    _, doc = run_config(capsys, one, "--gpu", "H100", "--gpus", "1")
    [f] = by_id(doc, "config.steps_per_epoch")
    assert f["status"] == "warn" and "40 samples" in f["observed"]  # 40 / 8 = 5 steps
    two = edit_yaml(one, {"dataset": "identity,alpaca_en_demo"})
    _, doc = run_config(capsys, two, "--gpu", "H100", "--gpus", "1")
    [f] = by_id(doc, "config.steps_per_epoch")
    assert f["status"] == "pass" and "80 samples" in f["observed"]  # up to 2 × 40: 10 steps


def test_load_best_model_is_refused_for_reward_and_ppo_stages(tmp_path, capsys):
    best = "load_best_model_at_end: true\nsave_strategy: steps\n"
    rm = edit_yaml(copy_config(tmp_path, LORA, "rm.yaml"), {"stage": "rm"}, best)
    code, doc = run_config(capsys, rm, "--gpu", "H100")
    [f] = by_id(doc, "config.best_model_strategy")
    assert code == 1 and f["status"] == "fail" and f["line"] == line_of(rm, "load_best_model_at_end")
    dpo = edit_yaml(copy_config(tmp_path, LORA, "dpo.yaml"), {"stage": "dpo"}, best)
    _, doc = run_config(capsys, dpo, "--gpu", "H100")
    assert statuses(doc, "config.best_model_strategy") == ["pass"]


def test_preference_training_rates_are_not_judged_by_sft_ranges(tmp_path, capsys):
    # LLaMA-Factory's examples/train_lora/llama3_lora_dpo.yaml and llama3_lora_kto.yaml: LoRA at 5e-6
    dpo = edit_yaml(copy_config(tmp_path, LORA, "dpo.yaml"), {"stage": "dpo", "learning_rate": "5.0e-6"})
    _, doc = run_config(capsys, dpo, "--gpu", "H100")
    [f] = by_id(doc, "config.lr_vs_method")
    assert f["status"] == "skip" and "DPO" in f["observed"] and f["line"] == line_of(dpo, "learning_rate")
    sft = edit_yaml(copy_config(tmp_path, LORA, "sft.yaml"), {"learning_rate": "5.0e-6"})
    _, doc = run_config(capsys, sft, "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["warn"]
    axolotl = edit_yaml(copy_config(tmp_path, "axolotl/lora-1b.yml"), {"learning_rate": "5.0e-6"}, "rl: dpo\n")
    _, doc = run_config(capsys, axolotl, "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["skip"]
    axolotl = edit_yaml(axolotl, {"rl": None})
    _, doc = run_config(capsys, axolotl, "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["warn"]


def test_method_unknown_for_plain_training_arguments(tmp_path, capsys):
    _, doc = run_config(capsys, CONFIGS / "hf/training_args.json", "--gpu", "H100")
    assert statuses(doc, "config.lr_vs_method") == ["skip"]
    _, doc = run_config(capsys, CONFIGS / "hf/training_args.json", "--gpu", "H100", "--method", "full")
    assert statuses(doc, "config.lr_vs_method") == ["pass"]
    _, doc = run_config(capsys, _hf(tmp_path, learning_rate=5e-6), "--gpu", "H100", "--method", "qlora")
    assert statuses(doc, "config.lr_vs_method") == ["warn"]


def test_no_warmup_with_a_high_rate(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, LORA), {"warmup_ratio": None, "learning_rate": "2.0e-4"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.no_warmup")
    assert f["status"] == "warn" and f["line"] == line_of(path, "learning_rate")
    path = edit_yaml(copy_config(tmp_path, FULL, "low.yaml"), {"warmup_ratio": None, "deepspeed": None})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.no_warmup") == ["pass"]  # 1e-5 needs none


def test_scheduler_names_and_plateau(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, LORA), {"lr_scheduler_type": "cosine_annealing"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.scheduler")
    assert f["status"] == "fail" and f["line"] == line_of(path, "lr_scheduler_type")
    path = edit_yaml(copy_config(tmp_path, "examples/train_lora/qwen3_lora_sft.yaml", "plateau.yaml"),
                     {"lr_scheduler_type": "reduce_lr_on_plateau"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.scheduler") == ["fail"]
    _, doc = run_config(capsys, CONFIGS / LORA, "--gpu", "H100")
    assert statuses(doc, "config.scheduler") == ["pass"]


def test_deepspeed_scheduler_overrides_the_trainer(tmp_path, capsys):
    sched = {"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": "auto"}}}
    yaml_path, _ = _full_with_ds(tmp_path, sched)
    _, doc = run_config(capsys, yaml_path, "--facts", H100)
    assert statuses(doc, "config.scheduler") == ["warn"]


def test_lora_rank_and_alpha(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, LORA), {"lora_rank": "0"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.lora_rank_alpha")
    assert f["status"] == "fail" and f["line"] == line_of(path, "lora_rank")
    path = edit_yaml(copy_config(tmp_path, LORA, "alpha.yaml"), {"lora_rank": "8"}, append="lora_alpha: 512\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.lora_rank_alpha")
    assert f["status"] == "warn" and f["line"] == line_of(path, "lora_alpha") and "lora_alpha: 16" in f["remediation"]
    for clean in (LORA, "axolotl/lora-1b.yml", "axolotl/qlora.yml"):
        _, doc = run_config(capsys, CONFIGS / clean, "--gpu", "H100")
        assert statuses(doc, "config.lora_rank_alpha") == ["pass"], clean


# -- evaluation ----------------------------------------------------------------------------------
def test_epochs_without_evaluation(capsys):
    path = CONFIGS / "examples/train_lora/qwen3_lora_sft.yaml"  # the published example: eval block commented out
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.no_eval")
    assert f["status"] == "warn" and f["line"] == line_of(path, "num_train_epochs")
    _, doc = run_config(capsys, CONFIGS / LORA, "--gpu", "H100")
    assert statuses(doc, "config.no_eval") == ["pass"]
    _, doc = run_config(capsys, CONFIGS / "axolotl/qlora.yml", "--gpu", "H100")  # 4 epochs, val_set_size
    assert statuses(doc, "config.no_eval") == ["pass"]


def test_axolotl_early_stopping_counts(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, "axolotl/qlora.yml"), {"val_set_size": "0", "evals_per_epoch": None})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.no_eval") == ["warn"]
    edit_yaml(path, append="early_stopping_patience: 3\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.no_eval") == ["pass"]


def test_evaluation_without_data(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, LORA), {"val_size": None})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.eval_without_data")
    assert f["status"] == "fail" and f["line"] == line_of(path, "eval_strategy")
    path = edit_yaml(copy_config(tmp_path, "axolotl/lora-1b.yml"), {"val_set_size": "0"}, append="eval_steps: 50\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.eval_without_data") == ["fail"]
    _, doc = run_config(capsys, CONFIGS / LORA, "--gpu", "H100")
    assert statuses(doc, "config.eval_without_data") == ["pass"]


def test_load_best_model_needs_matching_strategies(tmp_path, capsys):
    path = _hf(tmp_path, save_strategy="epoch")
    code, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.best_model_strategy")
    assert code == 1 and f["status"] == "fail" and f["line"] == line_of(path, '"eval_strategy"')
    path = _hf(tmp_path, eval_strategy=None, eval_steps=None)  # default eval_strategy "no" vs save "steps"
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.best_model_strategy") == ["fail"]
    path = _hf(tmp_path, save_strategy="best")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.best_model_strategy") == ["pass"]


def test_save_steps_multiple_of_eval_steps(tmp_path, capsys):
    path = _hf(tmp_path, save_steps=500)
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.save_eval_steps")
    assert f["status"] == "fail" and f["line"] == line_of(path, '"save_steps"') and "save_steps: 400" in f["remediation"]
    path = _hf(tmp_path, eval_steps=0.1, save_steps=500)
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert "mix a ratio" in by_id(doc, "config.save_eval_steps")[0]["observed"]
    path = _hf(tmp_path, eval_steps=None, logging_steps=30, save_steps=500)  # eval_steps defaults to logging_steps
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.save_eval_steps") == ["fail"]
    _, doc = run_config(capsys, CONFIGS / "hf/training_args.json", "--gpu", "H100")
    assert statuses(doc, "config.save_eval_steps") == ["pass"]


# -- sequence length, DeepSpeed, keys ------------------------------------------------------------
def test_sequence_length_over_the_model_positions(tmp_path, capsys):
    model_dir = tmp_path / "tinyllama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((CONFIGS / "models/tinyllama/config.json").read_text())
    path = edit_yaml(copy_config(tmp_path, LORA), {"model_name_or_path": "tinyllama", "cutoff_len": "4096"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.seq_len_positions")
    assert f["status"] == "warn" and f["line"] == line_of(path, "cutoff_len") and "2048" in f["remediation"]
    edit_yaml(path, {"cutoff_len": "2048"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.seq_len_positions") == ["pass"]
    _, doc = run_config(capsys, CONFIGS / LORA, "--gpu", "H100")  # a hub id: nothing local to compare
    assert statuses(doc, "config.seq_len_positions") == ["skip"]


def test_zero_stage_combinations(tmp_path, capsys):
    def ds(zero: dict) -> Path:
        return write_json(tmp_path / "ds.json", {"train_micro_batch_size_per_gpu": 1, "zero_optimization": zero})

    _, doc = run_config(capsys, ds({"stage": 4}), "--gpu", "H100")
    assert statuses(doc, "config.zero_stage") == ["fail"]
    _, doc = run_config(capsys, ds({"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}), "--gpu", "H100")
    assert statuses(doc, "config.zero_stage") == ["fail"]
    path = ds({"stage": 2, "offload_param": {"device": "cpu"}})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.zero_stage")
    assert f["status"] == "warn" and f["line"] == line_of(path, '"device"')
    yaml_path, _ = _full_with_ds(tmp_path / "", None)
    edit_yaml(yaml_path, append="pure_bf16: true\n")
    _, doc = run_config(capsys, yaml_path, "--facts", H100)
    assert "fail" in statuses(doc, "config.zero_stage")
    _, doc = run_config(capsys, CONFIGS / "examples/deepspeed/ds_z3_offload_config.json", "--gpu", "H100")
    assert statuses(doc, "config.zero_stage") == ["pass"]


def test_zero3_offload_against_host_ram(tmp_path, capsys):
    ds_path = CONFIGS / "examples/deepspeed/ds_z3_offload_config.json"
    yaml_path = edit_yaml(copy_config(tmp_path, FULL), {"deepspeed": str(ds_path)})
    _, doc = run_config(capsys, yaml_path, "--facts", V100, "--params", "70e9")  # 70B × 18 × 1.5 > 504 GiB
    [f] = by_id(doc, "config.zero3_offload_ram")
    assert f["status"] == "warn" and f["file"] == str(ds_path)
    assert f["line"] == line_of(ds_path, '"offload_param"') + 1
    _, doc = run_config(capsys, yaml_path, "--facts", V100, "--params", "7e9")
    assert statuses(doc, "config.zero3_offload_ram") == ["pass"]
    _, doc = run_config(capsys, yaml_path, "--facts", V100)
    assert statuses(doc, "config.zero3_offload_ram") == ["skip"]  # model size unknown


def test_missing_deepspeed_file(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, FULL), {"deepspeed": "nowhere/ds_z3.json"})
    code, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.deepspeed_file")
    assert code == 1 and f["status"] == "fail" and f["line"] == line_of(path, "deepspeed:")


def test_deepspeed_file_followed_relative_to_the_working_directory(capsys, monkeypatch):
    monkeypatch.chdir(CONFIGS)  # LLaMA-Factory's examples name examples/deepspeed/... from the repo root
    code, doc = run_config(capsys, FULL, "--facts", H100)
    assert [f["kind"] for f in doc["files"]] == ["llamafactory", "deepspeed"]
    assert doc["files"][1]["followed_from"] == f"{FULL}:{line_of(CONFIGS / FULL, 'deepspeed:')}"
    assert statuses(doc, "config.deepspeed_file") == ["pass"] and code == 0


def test_deepspeed_path_is_resolved_from_the_working_directory_first(tmp_path, capsys, monkeypatch):
    # LLaMA-Factory hands deepspeed: to transformers unchanged, which opens it from the working directory
    for folder, stage in ((tmp_path, 3), (tmp_path / "sub", 7)):
        write_json(_mkdirs(folder / "examples/deepspeed") / "ds.json",
                   {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": stage}})
    lf = edit_yaml(copy_config(tmp_path / "sub", FULL), {"deepspeed": "examples/deepspeed/ds.json"})
    monkeypatch.chdir(tmp_path)
    _, doc = run_config(capsys, lf, "--gpu", "H100")
    assert Path(doc["files"][1]["path"]).resolve() == (tmp_path / "examples/deepspeed/ds.json").resolve()
    assert statuses(doc, "config.zero_stage") == ["pass"]
    monkeypatch.chdir(tmp_path / "sub/examples")  # not there: the one beside the YAML is read
    _, doc = run_config(capsys, lf, "--gpu", "H100")
    assert statuses(doc, "config.zero_stage") == ["fail"]


def _mkdirs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _facts_with_transformers(tmp_path: Path, version: str) -> Path:
    """The H200 facts fixture with another transformers version."""
    data = json.loads((FACTS / "h200_vm.json").read_text())
    data["python"]["packages"]["transformers"] = version
    return write_json(tmp_path / f"facts_{version}.json", data)


def test_removed_training_arguments_keys(capsys):
    path = CONFIGS / "hf/alpaca_train.json"
    _, doc = run_config(capsys, path, "--facts", FACTS / "h200_vm.json")  # transformers 5.17.0
    assert statuses(doc, "config.renamed_keys") == ["fail", "fail"]  # evaluation_strategy; warmup_ratio (5.15)
    f = by_id(doc, "config.renamed_keys")[0]
    assert f["line"] == line_of(path, "evaluation_strategy")
    assert "rename evaluation_strategy to eval_strategy" in f["remediation"]
    _, doc = run_config(capsys, path, "--facts", H100)  # transformers 4.46.3 still accepts it
    assert statuses(doc, "config.renamed_keys") == ["warn"]
    assert "4.51.0 refuses it" in by_id(doc, "config.renamed_keys")[0]["observed"]
    _, doc = run_config(capsys, CONFIGS / "hf/training_args.json", "--facts", H100)
    assert statuses(doc, "config.renamed_keys") == ["pass"]
    _, doc = run_config(capsys, path, "--gpu", "H100")  # version unknown
    assert statuses(doc, "config.renamed_keys") == ["warn"]


def test_warmup_ratio_deprecated_in_5_0_removed_in_5_15(tmp_path, capsys):
    # the 5.0 help text said "will be removed in v5.2"; the field is in the 5.14.1 wheel, not in 5.15.0
    path = CONFIGS / "hf/training_args.json"
    _, doc = run_config(capsys, path, "--facts", _facts_with_transformers(tmp_path, "5.3.0"))
    [f] = by_id(doc, "config.renamed_keys")
    assert f["status"] == "warn" and f["line"] == line_of(path, "warmup_ratio")
    assert "deprecated in transformers 5.3.0; 5.15.0 refuses it" in f["observed"]
    assert "warmup_steps" in f["remediation"]
    _, doc = run_config(capsys, path, "--facts", FACTS / "h200_vm.json")  # 5.17.0
    [f] = by_id(doc, "config.renamed_keys")
    assert f["status"] == "fail" and "removed in transformers 5.15.0" in f["observed"]
    _, doc = run_config(capsys, path, "--facts", H100)  # 4.46.3: not even deprecated
    assert statuses(doc, "config.renamed_keys") == ["pass"]


def test_keys_removed_in_5_0_beyond_the_renamed_ones(tmp_path, capsys):
    path = _hf(tmp_path, half_precision_backend="cuda_amp", adafactor=True, warmup_ratio=None, warmup_steps=0.03)
    code, doc = run_config(capsys, path, "--facts", FACTS / "h200_vm.json")
    found = {f["line"]: f for f in by_id(doc, "config.renamed_keys")}
    assert code == 1 and [f["status"] for f in found.values()] == ["fail", "fail"]
    assert "optim: adafactor" in found[line_of(path, '"adafactor"')]["remediation"]
    clean = _hf(tmp_path, optim="adafactor", warmup_ratio=None, warmup_steps=0.03)
    _, doc = run_config(capsys, clean, "--facts", FACTS / "h200_vm.json")
    assert statuses(doc, "config.renamed_keys") == ["pass"]


def test_a_saved_4_46_dump_is_one_finding_not_twenty(tmp_path, capsys):
    # every field of transformers 4.46.3 at its default except the run's own choices
    path = CONFIGS / "hf/training_args_dump_4.46.json"
    code, doc = run_config(capsys, path, "--facts", H100)  # the release that wrote it
    assert problems(doc) == {} and code == 0
    code, doc = run_config(capsys, path, "--facts", FACTS / "h200_vm.json")  # 5.17.0 refuses it
    found = by_id(doc, "config.renamed_keys")
    assert [f["status"] for f in found] == ["fail", "fail"] and code == 1
    assert "warmup_ratio" in found[0]["observed"]  # 0.03: the user's choice, its own finding
    assert "refuses 21 key(s) it holds at their default values" in found[1]["observed"]
    assert "push_to_hub_token" in found[1]["observed"] and "logging_dir" in found[1]["observed"]
    # the same keys written by hand are each the user's choice
    small = _hf(tmp_path, no_cuda=False, save_safetensors=True, warmup_ratio=None)
    _, doc = run_config(capsys, small, "--facts", FACTS / "h200_vm.json")
    assert statuses(doc, "config.renamed_keys") == ["fail", "fail"]


def test_duplicate_keys(tmp_path, capsys):
    path = copy_config(tmp_path, LORA)
    path.write_text(path.read_text() + "learning_rate: 5.0e-5\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.duplicate_key")
    assert f["status"] == "warn" and f["line"] == len(path.read_text().splitlines())
    _, doc = run_config(capsys, CONFIGS / LORA, "--gpu", "H100")
    assert statuses(doc, "config.duplicate_key") == ["pass"]


def test_fp16_master_weights_outside_stage_2(tmp_path, capsys):
    path = write_json(tmp_path / "ds.json", {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
                                             "fp16": {"enabled": True, "fp16_master_weights_and_grads": True}})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.zero_stage")
    assert f["status"] == "fail" and f["line"] == line_of(path, "fp16_master_weights_and_grads")
    data = json.loads(path.read_text())
    data["zero_optimization"]["stage"] = 2
    _, doc = run_config(capsys, write_json(path, data), "--gpu", "H100")
    assert statuses(doc, "config.zero_stage") == ["pass"]


def test_llamafactory_do_eval_without_data(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, "examples/train_lora/qwen3_lora_sft.yaml"), append="do_eval: true\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.eval_without_data")
    assert f["status"] == "fail" and f["line"] == line_of(path, "do_eval")


PREDICT = "examples/train_lora/llama3_lora_predict.yaml"


def test_an_evaluation_only_config_is_not_judged_as_training(tmp_path, capsys):
    # LLaMA-Factory's predict example: do_predict, no do_train (false by default: nothing trains)
    code, doc = run_config(capsys, CONFIGS / PREDICT, "--gpu", "H100", "--gpus", "8")
    assert problems(doc) == {} and code == 0
    assert statuses(doc, "config.eval_without_data") == ["pass"]
    trains = edit_yaml(copy_config(tmp_path, PREDICT), append="do_train: true\n")
    _, doc = run_config(capsys, trains, "--gpu", "H100", "--gpus", "8")
    assert problems(doc) == {"config.steps_per_epoch": ["warn"], "config.no_eval": ["warn"]}


def test_predict_with_generate_needs_an_eval_dataset_not_val_size(tmp_path, capsys):
    path = edit_yaml(copy_config(tmp_path, PREDICT), {"eval_dataset": None}, "dataset: alpaca_en_demo\nval_size: 0.1\n")
    code, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.eval_without_data")
    assert code == 1 and f["status"] == "fail" and f["line"] == line_of(path, "predict_with_generate")
    assert "eval_dataset" in f["remediation"]


def test_deepspeed_auto_values_alone_are_not_judged(capsys):
    _, doc = run_config(capsys, CONFIGS / "examples/deepspeed/ds_z3_config.json", "--gpu", "H100")
    [f] = by_id(doc, "config.batch_arithmetic")
    assert f["status"] == "skip" and "auto" in f["observed"]


def test_inline_deepspeed_dict_in_training_arguments(tmp_path, capsys):
    path = _hf(tmp_path, deepspeed={"train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto",
                                    "gradient_accumulation_steps": "auto", "zero_optimization": {"stage": 5}})
    _, doc = run_config(capsys, path, "--facts", H100)  # 4 × 4 × 8 = 128
    assert [f["kind"] for f in doc["files"]] == ["hf", "deepspeed"]
    [batch] = by_id(doc, "config.batch_arithmetic")
    assert batch["status"] == "fail" and batch["line"] == line_of(path, '"train_batch_size"')
    [stage] = by_id(doc, "config.zero_stage")
    assert stage["status"] == "fail" and stage["line"] == line_of(path, '"stage"')


def test_a_saved_training_args_dump_with_null_legacy_keys(tmp_path, capsys):
    # Trainer.save writes every field; legacy ones are null there, and fsdp_config is a dict
    path = _hf(tmp_path, per_gpu_train_batch_size=None, fsdp_config={"min_num_params": 0, "xla": False})
    data = json.loads(path.read_text()) | {"per_gpu_train_batch_size": None, "evaluation_strategy": None}
    write_json(path, data)
    code, doc = run_config(capsys, path, "--gpu", "H100")
    assert doc["files"][0]["kind"] == "hf"
    assert statuses(doc, "config.renamed_keys") == ["pass"] and code == 0


def test_params_with_a_suffix(tmp_path, capsys):
    ds_path = CONFIGS / "examples/deepspeed/ds_z3_offload_config.json"
    yaml_path = edit_yaml(copy_config(tmp_path, FULL), {"deepspeed": str(ds_path)})
    _, doc = run_config(capsys, yaml_path, "--facts", V100, "--params", "70B")
    assert statuses(doc, "config.zero3_offload_ram") == ["warn"]
    assert "70.0B parameters, --params" in by_id(doc, "config.zero3_offload_ram")[0]["observed"]


def test_quantization_with_full_or_freeze_tuning_fails(tmp_path, capsys):
    # LLaMA-Factory hparams/parser.py _verify_model_args: "Quantization is only compatible with the LoRA method."
    full = edit_yaml(copy_config(tmp_path, FULL, "full_q.yaml"), append="quantization_bit: 4\n")
    _, doc = run_config(capsys, full, "--facts", H100)
    [f] = by_id(doc, "config.quantized_method")
    assert f["status"] == "fail" and f["line"] == line_of(full, "quantization_bit")
    assert "finetuning_type = full" in f["observed"] and "finetuning_type: lora" in f["remediation"]
    freeze = edit_yaml(copy_config(tmp_path, FULL, "freeze_q.yaml"), {"finetuning_type": "freeze"},
                       append="quantization_bit: 8\n")
    _, doc = run_config(capsys, freeze, "--facts", H100)
    assert statuses(doc, "config.quantized_method") == ["fail"]
    # QLoRA as the examples write it, and LoRA by default (finetuning_type absent), pass
    qlora = edit_yaml(copy_config(tmp_path, LORA, "qlora.yaml"), append="quantization_bit: 4\n")
    _, doc = run_config(capsys, qlora, "--facts", H100)
    [f] = by_id(doc, "config.quantized_method")
    assert f["status"] == "pass" and f["line"] == line_of(qlora, "quantization_bit")
    default = edit_yaml(copy_config(tmp_path, LORA, "default.yaml"), {"finetuning_type": None},
                        append="quantization_bit: 4\n")
    _, doc = run_config(capsys, default, "--facts", H100)
    assert statuses(doc, "config.quantized_method") == ["pass"]
    # without quantization there is nothing to check
    _, doc = run_config(capsys, CONFIGS / FULL, "--facts", H100)
    [f] = by_id(doc, "config.quantized_method")
    assert f["status"] == "pass" and f["line"] is None


# -- Axolotl config validation (axolotl-ai-cloud/axolotl src/axolotl/utils/schemas/) ---------------
AXO_LORA, AXO_QLORA = "axolotl/lora-1b.yml", "axolotl/qlora.yml"


def test_axolotl_quantized_model_needs_an_adapter_and_qlora_needs_4_bits(tmp_path, capsys):
    # peft.py LoraConfig.validate_adapter / validate_qlora
    full8 = edit_yaml(copy_config(tmp_path, AXO_LORA, "full8.yml"), {"adapter": None, "load_in_8bit": "true"})
    code, doc = run_config(capsys, full8, "--gpu", "H100")
    [f] = by_id(doc, "config.quantized_method")
    assert code == 1 and f["status"] == "fail" and f["line"] == line_of(full8, "load_in_8bit")
    assert "not supported without setting an adapter" in f["observed"] and "load_in_8bit: false" in f["remediation"]
    no4 = edit_yaml(copy_config(tmp_path, AXO_QLORA, "no4.yml"), {"load_in_4bit": "false"})
    _, doc = run_config(capsys, no4, "--gpu", "H100")
    [f] = by_id(doc, "config.quantized_method")
    assert f["status"] == "fail" and f["line"] == line_of(no4, "load_in_4bit")
    assert "Require cfg.load_in_4bit to be True for qlora" in f["observed"]
    in8 = edit_yaml(copy_config(tmp_path, AXO_QLORA, "in8.yml"), {"load_in_8bit": "true"})
    _, doc = run_config(capsys, in8, "--gpu", "H100")
    [f] = by_id(doc, "config.quantized_method")
    assert f["status"] == "fail" and "Can't load qlora in 8bit" in f["observed"]
    # the published examples pass: QLoRA with load_in_4bit, LoRA on an unquantized model
    _, doc = run_config(capsys, CONFIGS / AXO_QLORA, "--gpu", "H100")
    assert statuses(doc, "config.quantized_method") == ["pass"]
    _, doc = run_config(capsys, CONFIGS / AXO_LORA, "--gpu", "H100")
    assert problems(doc).get("config.quantized_method") is None


def test_axolotl_settings_it_refuses_together(tmp_path, capsys):
    # validation.py check_gas_bsz, check_warmup, check_evals, check_attention_fields
    path = edit_yaml(copy_config(tmp_path, AXO_LORA),
                     append="eval_steps: 50\nwarmup_ratio: 0.03\nbatch_size: 16\nsdp_attention: true\n")
    code, doc = run_config(capsys, path, "--gpu", "H100")
    found = {f["line"]: f for f in by_id(doc, "config.exclusive_settings")}
    assert code == 1 and all(f["status"] == "fail" for f in found.values())
    assert "please set only one of gradient_accumulation_steps or batch_size" in found[line_of(path, "batch_size: 16")]["observed"]
    assert "mutually exclusive" in found[line_of(path, "warmup_ratio")]["observed"]
    assert "eval_steps and evals_per_epoch" in found[line_of(path, "eval_steps: 50")]["observed"]
    assert "Only one of" in found[line_of(path, "flash_attention")]["observed"]
    assert len(found) == 4


def test_axolotl_eval_split_backend_and_packing_conflicts(tmp_path, capsys):
    # check_val_w_test_datasets, check_fsdp_deepspeed, check_sample_packing_w_rl, check_saves
    path = edit_yaml(copy_config(tmp_path, AXO_QLORA), {"saves_per_epoch": None}, append=(
        "test_datasets:\n  - path: mhenrichsen/alpaca_2k_test\n    type: alpaca\n    split: test\n"
        "fsdp:\n  - full_shard\n  - auto_wrap\ndeepspeed: deepspeed_configs/zero2.json\n"
        "save_strategy: epoch\nsave_steps: 100\nrl: dpo\n"))
    _, doc = run_config(capsys, path, "--gpu", "H100")
    observed = " | ".join(f["observed"] for f in by_id(doc, "config.exclusive_settings"))
    for error in ("non-zero val_set_size should not be used with test_datasets", "deepspeed and fsdp cannot be used",
                  "save_strategy and save_steps mismatch", "does not work with RLHF training"):
        assert error in observed, error
    for clean in (AXO_LORA, AXO_QLORA):
        _, doc = run_config(capsys, CONFIGS / clean, "--gpu", "H100")
        assert statuses(doc, "config.exclusive_settings") == ["pass"], clean


def test_axolotl_needs_two_of_the_three_batch_keys(tmp_path, capsys):
    # validation.py check_batch_size_fields
    path = edit_yaml(copy_config(tmp_path, AXO_LORA), {"gradient_accumulation_steps": None})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.batch_arithmetic")
    assert f["status"] == "fail" and f["line"] == line_of(path, "micro_batch_size")
    assert "At least two of micro_batch_size, gradient_accumulation_steps, batch_size" in f["observed"]
    _, doc = run_config(capsys, CONFIGS / AXO_LORA, "--gpu", "H100")
    assert statuses(doc, "config.batch_arithmetic") == ["pass"]


def test_axolotl_early_stopping_needs_save_and_eval_steps(tmp_path, capsys):
    # validation.py check_early_stopping: evals_per_epoch/saves_per_epoch (as in the examples) do not count
    path = edit_yaml(copy_config(tmp_path, AXO_QLORA), append="early_stopping_patience: 3\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.save_eval_steps")
    assert f["status"] == "fail" and f["line"] == line_of(path, "early_stopping_patience")
    assert "saves_per_epoch and evals_per_epoch do not count" in f["observed"]
    edit_yaml(path, {"evals_per_epoch": None, "saves_per_epoch": None}, append="eval_steps: 40\nsave_steps: 100\n")
    _, doc = run_config(capsys, path, "--gpu", "H100")
    [f] = by_id(doc, "config.save_eval_steps")
    assert f["status"] == "fail" and f["line"] == line_of(path, "save_steps") and "save_steps: 80" in f["remediation"]
    edit_yaml(path, {"save_steps": "120"})
    _, doc = run_config(capsys, path, "--gpu", "H100")
    assert statuses(doc, "config.save_eval_steps") == ["pass"]


# -- Accelerate launch configs (huggingface/accelerate commands/launch.py, utils/launch.py) ------
ACC_DS_FILE = "accelerate/deepspeed_config_file.yaml"


def test_accelerate_deepspeed_keys_next_to_a_deepspeed_json_fail(tmp_path, capsys):
    # DeepSpeedPlugin._deepspeed_config_checks: the ZeRO-2 plugin config (inline zero_stage, offload devices,
    # gradient_accumulation_steps, mixed_precision) launched with a trainer that names its own DeepSpeed JSON
    yaml_path, _ = _full_with_ds(tmp_path)
    acc = CONFIGS / "accelerate/deepspeed_zero2.yaml"
    code, doc = run_config(capsys, yaml_path, acc, "--facts", H100)
    [f] = by_id(doc, "config.deepspeed_source")
    assert code == 1 and f["status"] == "fail" and f["node"] == f"{acc}:{line_of(acc, 'gradient_accumulation_steps')}"
    assert "the following accelerate config variables will be ignored" in f["observed"]
    assert "mixed_precision" in f["observed"] and "zero_stage" in f["remediation"]
    # Accelerate's own deepspeed_config_file plus an inline key and mixed_precision
    both = edit_yaml(copy_config(tmp_path, ACC_DS_FILE), append="mixed_precision: bf16\n")
    _, doc = run_config(capsys, both, "--gpu", "H100")
    [f] = by_id(doc, "config.deepspeed_source")
    assert f["status"] == "fail" and f["line"] == line_of(both, "mixed_precision")
    # what `accelerate config` writes for a JSON passes, alone and with the trainer naming the same file
    _, doc = run_config(capsys, CONFIGS / ACC_DS_FILE, "--gpu", "H100")
    assert statuses(doc, "config.deepspeed_source") == ["pass"]
    same = edit_yaml(copy_config(tmp_path, FULL, "same.yaml"),
                     {"deepspeed": str(CONFIGS / "examples/deepspeed/ds_z3_config.json")})
    _, doc = run_config(capsys, same, CONFIGS / ACC_DS_FILE, "--facts", H100)
    assert statuses(doc, "config.deepspeed_source") == ["pass"]


def test_two_deepspeed_files_the_trainers_wins(tmp_path, capsys):
    # transformers TrainingArguments.deepspeed -> DeepSpeedPlugin(hf_ds_config=...) -> Accelerator(deepspeed_plugin=...)
    yaml_path, ds_path = _full_with_ds(tmp_path)
    acc = CONFIGS / ACC_DS_FILE
    code, doc = run_config(capsys, yaml_path, acc, "--facts", H100)
    [f] = by_id(doc, "config.deepspeed_source")
    assert f["status"] == "warn" and f["node"] == f"{acc}:{line_of(acc, 'deepspeed_config_file')}"
    assert "the trainer's deepspeed wins" in f["observed"] and "ds.json" in f["observed"]
    followed = {Path(d["path"]).resolve() for d in doc["files"] if d["kind"] == "deepspeed"}
    assert followed == {ds_path.resolve(), (CONFIGS / "examples/deepspeed/ds_z3_config.json").resolve()}


def test_accelerate_gpu_ids_and_main_process_ip(tmp_path, capsys):
    # utils/launch.py prepare_multi_gpu_env (CUDA_VISIBLE_DEVICES = gpu_ids; master_addr = str(main_process_ip));
    # commands/launch.py _validate_launch_command ("Less than two GPU ids ...")
    few = edit_yaml(copy_config(tmp_path, "accelerate/multi_node.yaml", "few.yaml"), {"gpu_ids": "0,1,2,3"})
    _, doc = run_config(capsys, few, "--gpu", "H100")
    [f] = by_id(doc, "config.accelerate_processes")
    assert f["status"] == "fail" and f["line"] == line_of(few, "gpu_ids") and "only 4 GPU(s)" in f["observed"]
    assert "num_processes: 8" in f["remediation"]
    one = edit_yaml(copy_config(tmp_path, "accelerate/multi_node.yaml", "one.yaml"),
                    {"gpu_ids": "'0'", "num_machines": "1", "num_processes": "8"})
    _, doc = run_config(capsys, one, "--gpu", "H100")
    [f] = by_id(doc, "config.accelerate_processes")
    assert f["status"] == "fail" and "Less than two GPU ids" in f["observed"]
    noip = edit_yaml(copy_config(tmp_path, "accelerate/multi_node.yaml", "noip.yaml"), {"main_process_ip": None})
    code, doc = run_config(capsys, noip, "--gpu", "H100")
    [f] = by_id(doc, "config.accelerate_processes")
    assert code == 0 and f["status"] == "warn" and f["line"] == line_of(noip, "num_machines")
    eight = edit_yaml(copy_config(tmp_path, "accelerate/multi_node.yaml", "eight.yaml"), {"gpu_ids": "0,1,2,3,4,5,6,7"})
    _, doc = run_config(capsys, eight, "--gpu", "H100")
    assert statuses(doc, "config.accelerate_processes") == ["pass"]


def test_a_llamafactory_config_that_asks_for_nothing_warns(tmp_path, capsys):
    # LLaMA-Factory's workflows train only if do_train, evaluate only if do_eval, predict only if
    # do_predict; all default to false: the job loads everything and exits
    idle = edit_yaml(copy_config(tmp_path, LORA, "idle.yaml"), {"do_train": None})
    code, doc = run_config(capsys, idle, "--facts", H100)
    [f] = by_id(doc, "config.nothing_runs")
    assert f["status"] == "warn" and "all default to false" in f["observed"] and code == 0
    off = edit_yaml(copy_config(tmp_path, LORA, "off.yaml"), {"do_train": "false"})
    _, doc = run_config(capsys, off, "--facts", H100)
    [f] = by_id(doc, "config.nothing_runs")
    assert f["status"] == "warn" and f["line"] == line_of(off, "do_train: false")
    _, doc = run_config(capsys, CONFIGS / LORA, "--facts", H100)
    [f] = by_id(doc, "config.nothing_runs")
    assert f["status"] == "pass" and f["line"] == line_of(CONFIGS / LORA, "do_train: true")
    _, doc = run_config(capsys, CONFIGS / "examples/train_lora/llama3_lora_predict.yaml", "--facts", H100)
    assert statuses(doc, "config.nothing_runs") == ["pass"]  # do_predict
    _, doc = run_config(capsys, CONFIGS / "axolotl/lora-1b.yml", "--facts", H100)
    assert by_id(doc, "config.nothing_runs")[0]["line"] is None  # not LLaMA-Factory: nothing to check
