"""Every parameter tensor of a model shape, grouped, hence exact counts.

The tensors are those ``transformers`` creates for the architecture (``modeling_<type>.py``): an
embedding V·h; per layer the attention projections (grouped-query: k and v are h·n_kv·d), their
biases where the architecture has them (Qwen2 q/k/v; GPT-2 all), per-head q/k RMSNorms (Qwen3:
d each), the MLP (gated: gate, up, down; plain: fc in/out with biases), the norms (RMSNorm: h;
LayerNorm: 2h; Gemma-2: four per layer), MoE experts, shared experts and routers; a final norm; an
LM head V·h unless the embeddings are tied; learned positions (GPT-2). DeepSeek-V3's multi-head
latent attention is q_a (h·q_lora), its norm, q_b (q_lora·n·(d_nope+d_rope)), kv_a
(h·(kv_lora+d_rope)), its norm, kv_b (kv_lora·n·(d_nope+d_v)) and o (n·d_v·h); its router's
correction bias is a buffer, not a parameter, and the multi-token-prediction module is not part of
the Hugging Face model. Formula reference: memory_formulas.md §6 (litgpt, torchtune builders).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from preflight.plan.model import ModelSpec

# where a tensor lives, for pipeline stages: the first stage holds the embeddings, the last the head
EMBED, BLOCK, HEAD = "embed", "block", "head"


@dataclass(frozen=True)
class TensorGroup:
    """``count`` tensors of one shape (one per layer, or per layer and expert)."""

    name: str
    shape: tuple[int, ...]
    count: int
    place: str = BLOCK
    linear: bool = False  # a weight matrix of a linear layer (LoRA target, quantised by QLoRA)
    expert: bool = False  # a routed expert's weight: a token uses top_k / experts of them
    attention: bool = False

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def numel(self) -> int:
        return self.size * self.count


def _linear(name: str, n_in: int, n_out: int, count: int, *, bias: bool, attention: bool = False,
            expert: bool = False) -> list[TensorGroup]:
    groups = [TensorGroup(f"{name}.weight", (n_out, n_in), count, linear=True, attention=attention, expert=expert)]
    if bias:
        groups.append(TensorGroup(f"{name}.bias", (n_out,), count, attention=attention, expert=expert))
    return groups


def _norm(name: str, width: int, count: int, spec: ModelSpec, place: str = BLOCK) -> list[TensorGroup]:
    groups = [TensorGroup(f"{name}.weight", (width,), count, place)]
    if spec.norm == "layer":
        groups.append(TensorGroup(f"{name}.bias", (width,), count, place))
    return groups


def _mlp(prefix: str, h: int, f: int, count: int, spec: ModelSpec, *, expert: bool = False) -> list[TensorGroup]:
    if spec.mlp == "plain":
        return _linear(f"{prefix}.c_fc", h, f, count, bias=True) + _linear(f"{prefix}.c_proj", f, h, count, bias=True)
    bias = spec.mlp_bias
    return (_linear(f"{prefix}.gate_proj", h, f, count, bias=bias, expert=expert)
            + _linear(f"{prefix}.up_proj", h, f, count, bias=bias, expert=expert)
            + _linear(f"{prefix}.down_proj", f, h, count, bias=bias, expert=expert))


def _attention(spec: ModelSpec) -> list[TensorGroup]:
    h, L, n, kv, d = spec.hidden, spec.layers, spec.heads, spec.kv_heads, spec.head_dim
    if spec.mla:
        groups: list[TensorGroup] = []
        q_out = n * (spec.qk_nope_dim + spec.qk_rope_dim)
        if spec.q_lora_rank:
            groups += _linear("attn.q_a_proj", h, spec.q_lora_rank, L, bias=spec.qkv_bias, attention=True)
            groups += [TensorGroup("attn.q_a_layernorm.weight", (spec.q_lora_rank,), L, attention=True)]
            groups += _linear("attn.q_b_proj", spec.q_lora_rank, q_out, L, bias=False, attention=True)
        else:
            groups += _linear("attn.q_proj", h, q_out, L, bias=False, attention=True)
        groups += _linear("attn.kv_a_proj_with_mqa", h, spec.kv_lora_rank + spec.qk_rope_dim, L,
                          bias=spec.qkv_bias, attention=True)
        groups += [TensorGroup("attn.kv_a_layernorm.weight", (spec.kv_lora_rank,), L, attention=True)]
        groups += _linear("attn.kv_b_proj", spec.kv_lora_rank, n * (spec.qk_nope_dim + spec.v_head_dim), L,
                          bias=False, attention=True)
        groups += _linear("attn.o_proj", n * spec.v_head_dim, h, L, bias=spec.o_bias, attention=True)
        return groups
    if spec.model_type == "gpt2":  # one fused Conv1D c_attn (h x 3h) with bias, c_proj with bias
        return (_linear("attn.c_attn", h, 3 * h, L, bias=True, attention=True)
                + _linear("attn.c_proj", h, h, L, bias=True, attention=True))
    groups = (_linear("attn.q_proj", h, n * d, L, bias=spec.qkv_bias, attention=True)
              + _linear("attn.k_proj", h, kv * d, L, bias=spec.qkv_bias, attention=True)
              + _linear("attn.v_proj", h, kv * d, L, bias=spec.qkv_bias, attention=True)
              + _linear("attn.o_proj", n * d, h, L, bias=spec.o_bias, attention=True))
    if spec.qk_norm:
        groups += [TensorGroup("attn.q_norm.weight", (d,), L, attention=True),
                   TensorGroup("attn.k_norm.weight", (d,), L, attention=True)]
    return groups


def tensor_groups(spec: ModelSpec) -> list[TensorGroup]:
    """All parameter tensors of the model, grouped by shape and role."""
    h, L, V = spec.hidden, spec.layers, spec.vocab
    groups = [TensorGroup("embed_tokens.weight", (V, h), 1, EMBED)]
    if spec.positions:
        groups.append(TensorGroup("embed_positions.weight", (spec.positions, h), 1, EMBED))
    groups += _attention(spec)
    dense_layers = L - spec.moe_layers
    if dense_layers:
        groups += _mlp("mlp", h, spec.intermediate, dense_layers, spec)
    if spec.moe:
        E, M = spec.experts, spec.moe_layers
        groups.append(TensorGroup("moe.router.weight", (E, h), M))
        groups += _mlp("moe.experts", h, spec.moe_intermediate, M * E, spec, expert=True)
        if spec.shared_intermediate:
            groups += _mlp("moe.shared_experts", h, spec.shared_intermediate, M, spec)
        if spec.shared_gate:
            groups += _linear("moe.shared_expert_gate", h, 1, M, bias=False)
    groups += _norm("layer_norms", h, L * spec.norms_per_layer, spec)
    groups += _norm("final_norm", h, 1, spec, HEAD)
    if not spec.tied:
        groups.append(TensorGroup("lm_head.weight", (V, h), 1, HEAD, linear=False))
    return groups


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int  # per token: all but the routed experts a token does not use
    embedding: int  # input embeddings (and learned positions)
    lm_head: int  # 0 when tied
    block: int  # all transformer layers
    largest_tensor: int  # the biggest single tensor (DeepSpeed's "largest layer" for most models)
    exact: bool


def count(spec: ModelSpec, groups: list[TensorGroup] | None = None) -> ParamCount:
    groups = tensor_groups(spec) if groups is None else groups
    total = sum(g.numel for g in groups)
    inactive = sum(g.numel for g in groups if g.expert) * (spec.experts - spec.top_k) // spec.experts if spec.moe else 0
    embedding = sum(g.numel for g in groups if g.place == EMBED)
    head = sum(g.numel for g in groups if g.name == "lm_head.weight")
    block = sum(g.numel for g in groups if g.place == BLOCK)
    largest = max(g.size for g in groups)
    if spec.total_override is not None:  # --params: scale the shape's count to the given total
        return ParamCount(spec.total_override, spec.total_override, embedding, head,
                          max(0, spec.total_override - embedding - head), largest, False)
    return ParamCount(total, total - inactive, embedding, head, block, largest, spec.exact)


# -- what training updates --------------------------------------------------------------------

LORA_TARGETS = ("all", "attention")


def lora_params(spec: ModelSpec, groups: list[TensorGroup], rank: int, targets: str = "all") -> int:
    """Adapter parameters: r·(in + out) per targeted linear weight (PEFT ``LoraLayer``: A is r×in,
    B is out×r). ``all``: every linear of the transformer layers (LLaMA-Factory ``lora_target: all``
    and PEFT ``all-linear``, which leave the LM head alone); ``attention``: attention projections."""
    total = 0
    for g in groups:
        if not g.linear or g.place != BLOCK or (targets == "attention" and not g.attention):
            continue
        n_out, n_in = g.shape
        total += rank * (n_in + n_out) * g.count
    return total


def freeze_trainable(spec: ModelSpec, groups: list[TensorGroup], trainable_layers: int) -> int:
    """Freeze tuning: the last ``trainable_layers`` transformer layers train (LLaMA-Factory
    ``freeze_trainable_layers``, default 2), everything else is frozen."""
    block = sum(g.numel for g in groups if g.place == BLOCK)
    layers = max(1, spec.layers)
    return block * min(trainable_layers, layers) // layers
