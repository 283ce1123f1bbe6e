"""The estimator against published numbers (memory_formulas.md): the ZeRO paper's Table 1,
Korthikanti et al. 2022's activation formulas for their configurations, DeepSpeed's and
Accelerate's documented estimator outputs (and where they count differently)."""

from __future__ import annotations

import pytest

from preflight.plan.memory import GIB, Layout, ModelMemory, Training, layer_activations
from preflight.plan.model import ModelSpec, load_catalog, spec_from_config
from preflight.plan.params import tensor_groups

CATALOG = {e.name: e for e in load_catalog().values()}


def states(est) -> int:  # noqa: ANN001
    return est.parameters + est.gradients + est.optimizer_states


def synthetic(params: int) -> ModelMemory:
    """A model of exactly ``params`` parameters (the ZeRO paper's Ψ), mixed-precision AdamW."""
    from preflight.plan.model import spec_from_params

    spec = spec_from_params(params, hidden=4096, layers=32, heads=32, vocab=32000)
    return ModelMemory(spec, tensor_groups(spec), Training(method="full", precision="bf16", optimizer="adamw"))


# ZeRO (Rajbhandari et al. 2020) Table 1, 7.5B model, GB = 1e9 bytes: DP degree -> (P_os, P_os+g, P_os+g+p)
ZERO_TABLE_1 = {
    1: (120, 120, 120),
    4: (52.5, 41.3, 30),
    16: (35.6, 21.6, 7.5),
    64: (31.4, 16.6, 1.88),
    256: (30.4, 15.4, 0.47),
    1024: (30.1, 15.1, 0.12),
}


def _half_unit(printed: float) -> float:
    text = repr(float(printed))
    decimals = len(text.split(".")[1]) if not text.endswith(".0") else 0
    return 0.5 * 10**-decimals + 1e-9


@pytest.mark.parametrize("dp", sorted(ZERO_TABLE_1))
def test_zero_table_1_model_states_for_7_5b(dp):
    mem = synthetic(7_500_000_000)
    for stage, printed in zip(("zero1", "zero2", "zero3"), ZERO_TABLE_1[dp]):
        got = states(mem.estimate(Layout(dp=dp, sharding=stage))) / 1e9
        assert abs(got - printed) <= _half_unit(printed), (dp, stage, got, printed)


def test_zero_figure_1_and_the_1t_cell():
    assert states(synthetic(7_500_000_000).estimate(Layout(dp=64))) / 1e9 == pytest.approx(120, abs=0.01)
    one_t = synthetic(1_000_000_000_000)
    assert round(states(one_t.estimate(Layout(dp=1024, sharding="zero3"))) / 1e9, 1) == 15.6  # bold in the paper


# -- Korthikanti et al. 2022 -------------------------------------------------------------------

def gpt3_style(heads: int, hidden: int, layers: int, vocab: int = 51200) -> ModelSpec:
    """Their layer: LayerNorm, 4h GeLU MLP, dropout, no FlashAttention (a GPT-2-type config)."""
    return spec_from_config({"model_type": "gpt2", "vocab_size": vocab, "n_embd": hidden, "n_layer": layers,
                             "n_head": heads, "n_positions": 2048}, name="gpt3-style", source="Korthikanti Table 3")


# Megatron's fp16 training: 16-bit weights and activations, no autocast (2-byte activations)
EAGER = Training(precision="pure-bf16", seq_len=2048, attention="eager")

# Table 3 configurations: name -> (heads, hidden, layers, TP, micro-batch)
TABLE_3 = {"22B": (64, 6144, 48, 8, 4), "175B": (96, 12288, 96, 8, 1), "530B": (128, 20480, 105, 8, 1),
           "1T": (160, 25600, 128, 8, 1)}


@pytest.mark.parametrize("name", sorted(TABLE_3))
def test_korthikanti_table_2_per_layer_rows(name):
    a, h, L, t, b = TABLE_3[name]
    s = 2048
    spec = gpt3_style(a, h, L)
    sbh = s * b * h
    rows = {  # Table 2, bytes per layer
        (1, False, "none"): sbh * (34 + 5 * a * s / h),
        (t, False, "none"): sbh * (10 + 24 / t + 5 * a * s / (h * t)),
        (t, True, "none"): sbh * (34 / t + 5 * a * s / (h * t)),
        (t, False, "selective"): sbh * (10 + 24 / t),
        (t, True, "selective"): sbh * 34 / t,
        (t, False, "full"): 2 * sbh,
    }
    for (tp, sp, recompute), expected in rows.items():
        kept, _ = layer_activations(spec, EAGER, Layout(tp=tp, sp=sp, recompute=recompute), b)
        assert kept == pytest.approx(expected, rel=1e-12), (tp, sp, recompute)


def test_korthikanti_selective_savings_quoted_in_the_paper():
    for (a, h, saving) in ((96, 12288, 0.70), (128, 20480, 0.65)):  # GPT-3: 70 %, MT-NLG: 65 %
        spec = gpt3_style(a, h, 8)
        full, _ = layer_activations(spec, EAGER, Layout(tp=8, sp=True), 1)
        selective, _ = layer_activations(spec, EAGER, Layout(tp=8, sp=True, recompute="selective"), 1)
        assert round(1 - selective / full, 2) == saving


def test_korthikanti_first_pipeline_stage_holds_l_layers():
    """Eq. 5 with selective recompute and SP (Eq. 6): 34·sbhL/t on the first stage, whatever p."""
    a, h, L, t, b = TABLE_3["530B"]
    spec = gpt3_style(a, h, L)
    mem = ModelMemory(spec, tensor_groups(spec), EAGER)
    expected = 34 * 2048 * b * h * L / t
    for p, m in ((35, 280), (35, 35)):
        layout = Layout(tp=t, pp=p, sp=True, recompute="selective", grad_accum=m)
        got = mem.activation_bytes(layout, b)
        # plus the embedding output and final norm (3·2sbh/t), which the paper's extra term sizes at sbh·p/t
        assert got == pytest.approx(expected, rel=0.01)
    # with fewer micro-batches than stages, fewer are in flight
    few = mem.activation_bytes(Layout(tp=t, pp=35, sp=True, recompute="selective", grad_accum=5), b)
    assert few < expected / 5


def test_flash_attention_drops_the_quadratic_term_and_eager_llama_upcasts():
    spec = spec_from_config(CATALOG["llama-3.1-8b"].config, name="l", source="t")
    flash = Training(seq_len=4096, precision="pure-bf16")
    eager = Training(seq_len=4096, precision="pure-bf16", attention="eager")
    f, _ = layer_activations(spec, flash, Layout(), 1)
    e, _ = layer_activations(spec, eager, Layout(), 1)
    s, h, kv, ffn, n = 4096, 4096, 1024, 14336, 32
    # memory_formulas.md §2.6, plus HF RMSNorm's fp32 copy of its input (4sbh per norm) and the
    # fp32 log-sum-exp of FlashAttention
    assert f == s * (12 * h + 4 * kv + 8 * ffn) + 2 * 4 * s * h + 4 * s * n
    # fp32 softmax output and its bf16 copy; K and V repeated to the 32 query heads
    assert e - f == 6 * n * s * s - 4 * s * n + 2 * 2 * s * (32 - 8) * 128
    # under autocast (fp32 weights) the residual stream is fp32: the normalised tensor is 4 bytes
    amp, _ = layer_activations(spec, Training(seq_len=4096), Layout(), 1)
    assert amp - f == 2 * 2 * s * h


# -- DeepSpeed's estimators (docs/code-docs/source/memory.rst), printed in GiB labelled "GB" ----

P_T5 = 2_851_000_000  # "2851M total params"
LL_T5 = 32_000_000  # "32M largest layer params"


def _gib2(value: float) -> float:
    return round(value / GIB, 2)


def test_deepspeed_zero2_estimates_and_where_we_differ():
    G = 8
    mem = synthetic(P_T5)
    # their printed numbers come from these formulas in GiB: 15.93 (no offload), 5.31 (offload)
    assert _gib2(4 * P_T5 + 16 * P_T5 / G) == 15.93 and _gib2(2 * P_T5) == 5.31
    plain = mem.estimate(Layout(dp=G, sharding="zero2"), gpus_per_node=G)
    ours = states(plain) + (plain.buffers if plain.peak_phase == "optimizer step" else 4 * P_T5 / G)
    # we shard the bf16 gradients (2P/G); DeepSpeed's estimator counts them whole (2P)
    assert ours + 2 * P_T5 - 2 * P_T5 / G == pytest.approx(4 * P_T5 + 16 * P_T5 / G, rel=1e-9)
    offload = mem.estimate(Layout(dp=G, sharding="zero2", offload="optimizer"), gpus_per_node=G)
    assert _gib2(states(offload)) == 5.31  # the same: bf16 weights only
    # CPU: they print 127.45 = P·max(4G,16)·1.5 (an fp32 model per rank at load time, x1.5 margin);
    # we count the offloaded states themselves, fp32 master + moments + fp32 gradients = 16P per node
    assert _gib2(P_T5 * max(4 * G, 16) * 1.5) == 127.45
    assert offload.host_bytes_per_node == pytest.approx(16 * P_T5, rel=1e-9)


def test_deepspeed_zero3_estimates_and_where_we_differ():
    G = 8
    mem = synthetic(P_T5)
    assert _gib2(4 * LL_T5 + 18 * P_T5 / G) == 6.09
    assert _gib2(4 * LL_T5 + 2 * P_T5 / G) == 0.78
    assert _gib2(4 * LL_T5) == 0.12
    none = mem.estimate(Layout(dp=G, sharding="zero3"), gpus_per_node=G)
    # their 18 = fp32 master, fp32 gradients, two moments, bf16 weights; we also keep the bf16
    # gradient partition (2P/G) and count the fp32 gradients as the step's buffer
    assert states(none) + 4 * P_T5 / G == pytest.approx(18 * P_T5 / G + 2 * P_T5 / G, rel=1e-9)
    opt = mem.estimate(Layout(dp=G, sharding="zero3", offload="optimizer"), gpus_per_node=G)
    assert _gib2(states(opt)) == _gib2(2 * P_T5 / G) == 0.66  # theirs 0.78 adds the gathered layer, 4·LL
    everything = mem.estimate(Layout(dp=G, sharding="zero3", offload="all"), gpus_per_node=G)
    assert states(everything) == 0  # theirs: only the gathered largest layer stays, 0.12


# -- Accelerate estimate-memory (docs: model_size_estimator.md), base 1024 labelled MB/GB ----

def test_accelerate_bert_base_cased_training_with_adam_is_4x_fp32():
    params, buffers = 108_310_272, 8192
    assert round((params * 4 + buffers) / 2**20, 2) == 413.18  # "Total size 413.18 MB"
    bert = spec_from_config({"model_type": "gpt2", "vocab_size": 28996, "n_embd": 768, "n_layer": 12, "n_head": 12,
                             "n_positions": 512}, name="bert-shaped", source="t")
    mem = ModelMemory(bert, tensor_groups(bert), Training(precision="fp32"))
    scale = params / mem.param_count
    est = mem.estimate(Layout())
    # fp32 weights 4, fp32 gradients 4, Adam 8: 16 B per parameter = their "4x the model"
    assert states(est) * scale == pytest.approx(16 * params, rel=1e-9)
    assert round(16 * params / GIB, 2) == 1.61  # "Training using Adam 1.61 GB"


def test_accelerate_counts_the_base_model_without_the_lm_head():
    """zephyr-7b-alpha (Mistral-7B): 27.49 "GB" fp32 = (count - lm_head) x 4 B + the per-layer rotary
    caches transformers 4.34 registered as buffers; largest layer 864.03 "MB" = one decoder layer."""
    spec = spec_from_config(CATALOG["mistral-7b"].config, name="m", source="t")
    mem = ModelMemory(spec, tensor_groups(spec), Training(precision="fp32"))
    caches = 2 * 32768 * 128 * 4 + 64 * 4  # cos and sin caches (fp32) and inv_freq, per layer
    base = mem.param_count - mem.counted.lm_head
    assert mem.counted.lm_head == 131_072_000
    assert round((base * 4 + 32 * caches) / GIB, 2) == 27.49
    assert round((mem.layer_max * 4 + caches) / 2**20, 2) == 864.03
    # Llama-2-70B (GPTQ repo, full-precision sizes): fp16 128.15 "GB", 4096-position caches
    llama2 = spec_from_config({"model_type": "llama", "vocab_size": 32000, "hidden_size": 8192,
                               "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                               "num_key_value_heads": 8}, name="llama-2-70b", source="t")
    big = ModelMemory(llama2, tensor_groups(llama2), Training())
    caches70 = 2 * 4096 * 128 * 4 + 64 * 4
    assert big.param_count == 68_976_648_192
    assert round(((big.param_count - big.counted.lm_head) * 4 + 80 * caches70) / 2 / GIB, 2) == 128.15


# -- methods, precisions, optimizers, parallelism ----------------------------------------------

LLAMA8B = spec_from_config(CATALOG["llama-3.1-8b"].config, name="l", source="t")
GROUPS = tensor_groups(LLAMA8B)


def estimate(training: Training, layout: Layout = Layout()):  # noqa: ANN201
    return ModelMemory(LLAMA8B, GROUPS, training).estimate(layout)


DEEPSPEED = Layout(sharding="zero1")  # one GPU under DeepSpeed: bf16 weights, fp32 master in the optimizer


def test_bytes_per_parameter_by_precision_and_optimizer():
    N = 8_030_261_248
    assert states(estimate(Training(precision="fp32"))) == 16 * N  # 4 + 4 + 8
    mixed = estimate(Training(precision="bf16"), DEEPSPEED)
    assert (mixed.parameters, mixed.gradients, mixed.optimizer_states) == (2 * N, 2 * N, 12 * N)  # ZeRO's K = 12
    amp = estimate(Training(precision="bf16"))  # autocast: fp32 weights are the master copy
    assert (amp.parameters, amp.gradients, amp.optimizer_states) == (4 * N, 4 * N, 8 * N)
    assert states(estimate(Training(precision="pure-bf16"))) == 8 * N  # 2 + 2 + two bf16 moments
    assert states(estimate(Training(optimizer="sgd"), DEEPSPEED)) == 12 * N  # 2 + 2 + master 4 + momentum 4
    eight = states(estimate(Training(optimizer="adamw-8bit"), DEEPSPEED))
    assert eight == pytest.approx((2 + 2 + 4 + 2 + 8 / 2048) * N, rel=1e-6)  # Transformer Math: 6 B + weights, grads
    ada = estimate(Training(optimizer="adafactor"), DEEPSPEED).optimizer_states
    assert 4 * N < ada < 4.01 * N  # master copy plus a factored second moment of rows + columns


def test_lora_and_qlora_base_weights():
    N = 8_030_261_248
    linear = N - 2 * 128256 * 4096 - (2 * 32 + 1) * 4096  # block linears: not embeddings, head or norms
    lora = estimate(Training(method="lora"))
    qlora = estimate(Training(method="qlora"))
    adapters = 20_971_520
    # the frozen base in bf16; the adapters train under autocast in fp32 (4 + 4 + 8)
    assert lora.parameters == 2 * N + 4 * adapters
    nf4 = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # 4.127 bits (QLoRA §3)
    assert qlora.parameters == int(linear * nf4 + (N - linear) * 2 + 4 * adapters)
    assert lora.gradients == 4 * adapters and lora.optimizer_states == 8 * adapters


def test_freeze_tuning_trains_the_last_layers_only():
    est = estimate(Training(method="freeze", trainable_layers=2))
    mem = ModelMemory(LLAMA8B, GROUPS, Training(method="freeze", trainable_layers=2))
    per_layer = mem.block / 32
    assert mem.trainable_params == int(2 * per_layer)
    assert est.gradients == 4 * mem.trainable_params  # fp32 under autocast
    full = ModelMemory(LLAMA8B, GROUPS, Training())
    kept, _ = layer_activations(LLAMA8B, Training(), Layout(), 1)
    assert full.activation_bytes(Layout(), 1) - mem.activation_bytes(Layout(), 1) == pytest.approx(30 * kept)


def test_tensor_and_pipeline_parallel_split_the_weights():
    one = estimate(Training(), Layout(sharding="zero1"))
    tp = estimate(Training(), Layout(tp=8, sp=True, sharding="zero1"))
    pp = estimate(Training(), Layout(pp=4, grad_accum=8, sharding="zero1"))
    assert tp.parameters < one.parameters / 7.5  # norms stay whole on every TP rank
    # the largest stage: 8 of 32 layers plus the bigger of embedding and head
    stage = (8 / 32) * (8_030_261_248 - 2 * 128256 * 4096 - 4096) + 128256 * 4096 + 4096
    assert pp.parameters == pytest.approx(2 * stage, rel=1e-3)


def test_recompute_and_sequence_length_scale_activations():
    a1 = estimate(Training(seq_len=2048)).activations
    a2 = estimate(Training(seq_len=4096)).activations
    assert a2 == pytest.approx(2 * a1, rel=1e-9)  # flash attention: linear in s
    full = estimate(Training(seq_len=4096), Layout(recompute="full")).activations
    assert full < a2 / 3


def test_offload_moves_states_to_the_host():
    on_gpu = estimate(Training(), Layout(dp=8, sharding="zero3"))
    off = ModelMemory(LLAMA8B, GROUPS, Training()).estimate(Layout(dp=8, sharding="zero3", offload="all"),
                                                            gpus_per_node=8)
    assert off.parameters == off.optimizer_states == 0
    assert off.host_bytes_per_node > 0 and off.total < on_gpu.total


def test_zero3_cannot_be_combined_with_pipeline_parallelism():
    from preflight.plan.memory import check_layout

    assert "DeepSpeed" in check_layout(LLAMA8B, Layout(pp=2, sharding="zero3"))
    assert check_layout(LLAMA8B, Layout(tp=3)) is not None
    assert check_layout(LLAMA8B, Layout(tp=8, pp=2, sp=True, sharding="zero1")) is None


# -- the SDPA kernel per device (memory.sdpa_kernel) -----------------------------------------

SMALL_GQA = spec_from_config({"model_type": "llama", "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816,
                              "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
                              "tie_word_embeddings": False}, name="0.2B", source="benchmarks/plan_vs_measured.py")


def test_cuda_runs_fp32_gqa_in_the_math_kernel_and_the_cpu_stays_fused():
    from preflight.plan.memory import sdpa_kernel

    mha = spec_from_config(CATALOG["llama-3.1-8b"].config | {"num_key_value_heads": 32}, name="mha", source="t")
    assert sdpa_kernel(SMALL_GQA, Training(precision="fp32")) == "math"
    assert sdpa_kernel(SMALL_GQA, Training(precision="fp32", device="cpu")) == "flash"
    assert sdpa_kernel(mha, Training(precision="fp32")) == "efficient"
    for precision in ("bf16", "pure-bf16", "fp16"):
        assert sdpa_kernel(SMALL_GQA, Training(precision=precision)) == "flash"
    assert sdpa_kernel(SMALL_GQA, Training(precision="fp32", attention="eager")) == "eager"


def test_the_math_kernel_adds_the_fp32_softmax_and_repeated_kv():
    """fp32, seq 1024 x batch 4, 16 heads of 64, 4 KV heads: per layer the math kernel keeps the fp32
    softmax (4·b·n·s²), K and V at 16 heads instead of 4 (2·4·s·b·12·64), and no LSE (4·s·b·n)."""
    s, b, n, kv, d, L = 1024, 4, 16, 4, 64, 8
    cuda = ModelMemory(SMALL_GQA, tensor_groups(SMALL_GQA), Training(precision="fp32", seq_len=s))
    cpu = ModelMemory(SMALL_GQA, tensor_groups(SMALL_GQA), Training(precision="fp32", seq_len=s, device="cpu"))
    per_layer = 4 * b * n * s * s + 2 * 4 * s * b * (n - kv) * d - 4 * s * b * n
    assert per_layer == 293_339_136
    got = cuda.estimate(Layout(micro_batch=b)).total - cpu.estimate(Layout(micro_batch=b)).total
    assert got == L * per_layer


def test_eager_fp32_keeps_one_softmax_copy():
    """In fp32 the eager softmax's cast back to the compute dtype is a no-op: the same 4 bytes per
    score as the math kernel (which the CPU measurement confirms, tests/test_plan_measured.py)."""
    t = dict(precision="fp32", seq_len=1024)
    eager, _ = layer_activations(SMALL_GQA, Training(attention="eager", **t), Layout(), 4)
    math, _ = layer_activations(SMALL_GQA, Training(**t), Layout(), 4)
    assert eager == math
