"""Exact parameter counts: the catalog against its published counts, the formula pieces one by one,
and (when transformers is installed) the models transformers builds from the same configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from preflight.plan.model import load_catalog, spec_from_config
from preflight.plan.params import count, lora_params, tensor_groups

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CATALOG = {e.name: e for e in load_catalog().values()}


def counted(config: dict, name: str = "t"):
    return count(spec_from_config(config, name=name, source="test"))


# Published counts: transformers' num_parameters() for these configs, as stated by the sources
# named in compat_matrix/models.toml (Llama-3.1-8B = 8,030,261,248: the issue; the others:
# memory_formulas.md §6, which checked the formula against transformers for these models).
PUBLISHED = {
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.2-1b": 1_235_814_400,
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-72b": 72_706_203_648,
    "qwen3-8b": 8_190_735_360,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-9b": 9_241_705_984,
    "phi-3-mini": 3_821_079_552,
    "gpt2": 124_439_808,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalog_counts_equal_the_published_counts(name):
    assert counted(CATALOG[name].config).total == PUBLISHED[name]
    assert CATALOG[name].param_count in (None, PUBLISHED[name])


def test_every_catalog_entry_names_its_source_and_date():
    data = tomllib.loads((ROOT / "compat_matrix" / "models.toml").read_text())
    assert data["model"], "the catalog is empty"
    for entry in data["model"]:
        assert entry["source"].startswith("https://huggingface.co/") and entry["source"].endswith("config.json"), entry["name"]
        assert entry.get("checked"), f"{entry['name']}: no cross-check named"
        assert str(entry["verified"]) >= "2026-01-01", entry["name"]
        assert "model_type" in entry["config"], entry["name"]


def test_every_catalog_count_is_recomputed():
    for entry in CATALOG.values():
        if entry.param_count is not None:
            assert counted(entry.config).total == entry.param_count, entry.name


def test_mixtral_total_and_active():
    c = counted(CATALOG["mixtral-8x7b"].config)
    assert c.total == 46_702_792_704  # model card: 46.7B total
    # a token uses 2 of 8 experts: 6/8 of 32 x 8 x 3 x 4096 x 14336 expert weights stay idle
    assert c.active == 46_702_792_704 - 32 * 6 * 3 * 4096 * 14336 == 12_879_925_248  # model card: 12.9B active


def test_qwen3_moe_total_and_active():
    c = counted(CATALOG["qwen3-30b-a3b"].config)
    assert round(c.total / 1e9, 1) == 30.5  # model card: 30.5B
    experts = 48 * 128 * 3 * 2048 * 768
    assert c.active == c.total - experts * 120 // 128  # a token uses 8 of 128 experts per layer


def test_deepseek_v3_total_and_active():
    """README_WEIGHTS.md: main model 671B, 36.6B activated including the 0.9B output head (the
    input embedding is a lookup, not counted there); the MTP module is not in the HF model."""
    c = counted(CATALOG["deepseek-v3"].config)
    assert c.total == 671_026_404_352
    embedding = 129280 * 7168
    assert round((c.active - embedding) / 1e9, 1) == 36.6
    assert round(c.lm_head / 1e9, 1) == 0.9


def test_tied_embeddings_drop_the_head_and_untied_add_it():
    base = dict(CATALOG["qwen2.5-0.5b"].config)
    tied = counted(base)
    untied = counted({**base, "tie_word_embeddings": False})
    assert untied.total - tied.total == 151936 * 896
    assert tied.lm_head == 0 and untied.lm_head == 151936 * 896


def test_qkv_biases_qk_norms_head_dim_and_norm_kinds():
    llama = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    plain = counted(llama).total
    # q/k/v/o biases: 4·16 + 2·(2·16) + 64 per layer
    assert counted({**llama, "attention_bias": True}).total - plain == 2 * (64 + 32 + 32 + 64)
    assert counted({**llama, "mlp_bias": True}).total - plain == 2 * (128 + 128 + 64)
    # Qwen2: q/k/v biases, no o bias
    assert counted({**llama, "model_type": "qwen2"}).total - plain == 2 * (64 + 32 + 32)
    # Qwen3: per-head q/k RMSNorm of head_dim each
    assert counted({**llama, "model_type": "qwen3"}).total - plain == 2 * (16 + 16)
    # head_dim override: q is h x n·d, k/v h x kv·d, o n·d x h
    wide = counted({**llama, "head_dim": 32}).total - plain
    assert wide == 2 * (64 * 4 * 16 + 2 * 64 * 2 * 16 + 4 * 16 * 64)
    # Gemma-2: four RMSNorms per layer instead of two, tied embeddings by default
    g1 = counted({**llama, "model_type": "gemma", "head_dim": 16}).total
    g2 = counted({**llama, "model_type": "gemma2", "head_dim": 16}).total
    assert g2 - g1 == 2 * 2 * 64
    assert plain - g1 == 1000 * 64  # gemma ties the head
    # a Gemma config without head_dim takes GemmaConfig's default, 256, as transformers does
    assert counted({**llama, "model_type": "gemma"}).total > g1


def test_gpt2_plain_mlp_layernorm_learned_positions():
    c = counted(CATALOG["gpt2"].config)
    h, L, V, P = 768, 12, 50257, 1024
    per_layer = (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h) + 2 * 2 * h
    assert c.total == V * h + P * h + L * per_layer + 2 * h


def test_lora_adapters_r_times_in_plus_out():
    spec = spec_from_config(CATALOG["llama-3.1-8b"].config, name="x", source="t")
    groups = tensor_groups(spec)
    # PEFT all-linear, r=8 on Llama-3.1-8B: q 4096->4096, k/v 4096->1024, o, gate/up 4096->14336, down
    per_layer = 8 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert lora_params(spec, groups, 8) == 32 * per_layer == 20_971_520
    assert lora_params(spec, groups, 8, "attention") == 32 * 8 * ((4096 + 4096) * 2 + (4096 + 1024) * 2)


def test_unknown_model_type_is_counted_but_marked_approximate():
    spec = spec_from_config({"model_type": "newthing", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 1, "num_attention_heads": 4}, name="n", source="t")
    assert not count(spec).exact and spec.notes



def _transformers_count(config: dict) -> int:
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    hf_config = tf.AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        model = tf.AutoModelForCausalLM.from_config(hf_config)
    return sum(p.numel() for p in model.parameters())


SMALL_VARIANTS = {
    "llama attention_bias + mlp_bias": {"model_type": "llama", "vocab_size": 512, "hidden_size": 64,
                                        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                                        "num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True},
    "qwen3 head_dim override": {"model_type": "qwen3", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
                                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                "head_dim": 48},
    "qwen2_moe shared expert": {"model_type": "qwen2_moe", "vocab_size": 512, "hidden_size": 64,
                                "intermediate_size": 96, "moe_intermediate_size": 32,
                                "shared_expert_intermediate_size": 80, "num_experts": 6, "num_experts_per_tok": 2,
                                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                                "decoder_sparse_step": 1, "mlp_only_layers": [1]},
    "qwen3_moe": {"model_type": "qwen3_moe", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
                  "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2},
    "deepseek_v3 without q_lora": {"model_type": "deepseek_v3", "vocab_size": 512, "hidden_size": 64,
                                   "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 3,
                                   "num_attention_heads": 4, "num_key_value_heads": 4, "n_shared_experts": 2,
                                   "n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
                                   "q_lora_rank": None, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
                                   "qk_rope_head_dim": 8, "v_head_dim": 8, "n_group": 1, "topk_group": 1},
    "gpt2 n_inner": {"model_type": "gpt2", "vocab_size": 512, "n_embd": 64, "n_layer": 2, "n_head": 4,
                     "n_positions": 128, "n_inner": 100},
    "phi3": {"model_type": "phi3", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": 0},
}


@pytest.mark.parametrize("name", sorted(SMALL_VARIANTS))
def test_counts_equal_transformers_for_architecture_variants(name):
    config = SMALL_VARIANTS[name]
    assert counted(config).total == _transformers_count(config)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_counts_equal_transformers_on_the_meta_device(name):
    config = CATALOG[name].config
    assert counted(config).total == _transformers_count(config)
