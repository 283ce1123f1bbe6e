"""Bytes per GPU for one training layout, broken down.

Sources (``memory_formulas.md``): model states per ZeRO stage from Rajbhandari et al. 2020 (K = 12
for mixed-precision Adam: fp32 master, momentum and variance; §1); activations per layer from
Korthikanti et al. 2022 (Table 2: sbh(34 + 5as/h), its tensor-, sequence-parallel, selective and
full-recompute rows, and the 1F1B first stage holding L layers' worth; §2); the Llama-style
generalisation of the same tensor-by-tensor accounting (§2.6); QLoRA's NF4 with double
quantisation at 4 + 8/64 + 32/(64·256) bits per weight (Dettmers et al. 2023, §3); 8-bit Adam at 2 B
of state per parameter plus blockwise constants (bitsandbytes, block 2048); Adafactor's factored
second moment, (rows + columns) per matrix and no momentum (Shazeer & Stern 2018, HF default).

What is counted, per GPU:
- ``parameters``: weights held on the GPU (trainable in the working dtype, frozen ones in theirs:
  bf16, NF4, int8), divided by TP, by PP (the largest stage) and by the shard group under ZeRO-3/FSDP.
- ``gradients``: one per trainable weight in the gradient dtype; sharded from ZeRO-2 on.
- ``optimizer_states``: fp32 master copy (mixed precision) and the optimizer's moments; sharded from
  ZeRO-1 on.
- ``activations``: what the forward pass keeps for the backward pass, for the micro-batches in
  flight, plus the loss's logits (fp32 upcast, log-softmax and their gradients).
- ``buffers``: temporaries of the phase that peaks: ZeRO-3/FSDP gathered layers and the DDP
  bucket copy of the gradients during forward/backward; the optimizer step's fp32 gradient or
  update temporaries.
- ``overhead``: CUDA context and libraries (1 GiB; the Ultra-Scale Playbook gives 1-2 GB), plus NCCL
  buffers (0.5 GiB) when there is more than one GPU; not seen by ``torch.cuda.max_memory_allocated``.

``total`` is the peak: parameters + optimizer states + the larger of the forward/backward phase
(activations, plus gradients where DDP or DeepSpeed keeps them allocated, plus its buffers) and the
optimizer-step phase (all gradients plus its buffers), plus overhead. The components therefore
do not always add up to it; ``peak_phase`` says which phase set it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import ceil

from preflight.errors import InputError
from preflight.plan.model import ModelSpec
from preflight.plan.params import (
    BLOCK,
    EMBED,
    HEAD,
    TensorGroup,
    count,
    freeze_trainable,
    lora_params,
)

GIB = 2**30
CONTEXT_BYTES = 1 * GIB
NCCL_BYTES = GIB // 2

METHODS = ("full", "freeze", "lora", "qlora", "qlora-8bit")
PRECISIONS = ("fp32", "bf16", "fp16", "pure-bf16")
OPTIMIZERS = ("adamw", "adamw-8bit", "adafactor", "sgd")
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp", "fsdp-hybrid")
RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("flash", "eager")
DEVICES = ("cuda", "cpu")
OFFLOAD = ("none", "optimizer", "all")

NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # QLoRA §3: NF4 weights, double-quantised constants
ADAM8_BYTES = 2 + 2 * 4 / 2048  # two 8-bit moments, one fp32 absmax per 2048-element block each
ZERO3_SUB_GROUP = 10**9  # DeepSpeed stage3 sub_group_size: fp32 gradients are upcast per sub-group


@dataclass(frozen=True)
class Training:
    """What is trained, and how: independent of the layout."""

    method: str = "full"
    precision: str = "bf16"
    optimizer: str = "adamw"
    seq_len: int = 2048
    lora_rank: int = 8
    lora_targets: str = "all"
    trainable_layers: int = 2
    attention: str = "flash"
    # whose attention kernels the activations follow (``sdpa_kernel``): the planner estimates GPUs;
    # "cpu" models torch's CPU kernels for the CPU measurement harness (benchmarks/plan_vs_measured.py)
    device: str = "cuda"


@dataclass(frozen=True)
class Layout:
    """How the job is spread: data (dp), tensor (tp), pipeline (pp) and context (cp) parallel degrees."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    sp: bool = False
    sharding: str = "none"
    shard_group: int = 0  # fsdp-hybrid: GPUs sharing one copy (a node's worth); 0: all of dp
    micro_batch: int = 1
    grad_accum: int = 1
    recompute: str = "none"
    offload: str = "none"

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def shard(self) -> int:
        """GPUs one copy of the model states is split across (ZeRO/FSDP)."""
        if self.sharding == "none":
            return 1
        if self.sharding == "fsdp-hybrid" and self.shard_group:
            return min(self.shard_group, self.dp * self.cp)
        return self.dp * self.cp

    @property
    def zero_level(self) -> int:
        """ZeRO stage equivalent: what is sharded (FSDP full and hybrid shard everything, like stage 3)."""
        return {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3, "fsdp-hybrid": 3}[self.sharding]


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU (the busiest one: the first pipeline stage, or the last when its logits weigh more)."""

    parameters: int
    gradients: int
    optimizer_states: int
    activations: int
    buffers: int
    overhead: int
    total: int
    peak_phase: str  # "forward/backward" or "optimizer step"
    host_bytes_per_node: int  # CPU RAM the offloaded states need on each node
    param_count: int
    trainable_params: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class ModelMemory:
    """The per-model numbers every layout reuses: computed once, so a search over thousands of
    layouts costs microseconds each."""

    def __init__(self, spec: ModelSpec, groups: list[TensorGroup], training: Training) -> None:
        _check_training(spec, training)
        self.spec, self.training = spec, training
        counted = count(spec, groups)
        self.counted = counted
        self.param_count = counted.total
        scale = counted.total / max(1, sum(g.numel for g in groups))  # 1 except for --params
        L = spec.layers
        # per-stage split: block tensors spread over stages, embeddings on the first, head on the last
        self.tp_split = sum(g.numel for g in groups if _tp_splits(g)) * scale
        self.tp_whole = counted.total - self.tp_split
        self.embed = sum(g.numel for g in groups if g.place == EMBED) * scale
        self.head = sum(g.numel for g in groups if g.place == HEAD) * scale
        self.block = counted.total - self.embed - self.head
        self.largest = counted.largest_tensor * scale
        self.layer_max = _largest_layer(spec, groups) * scale
        self.largest_linear = max((g.size for g in groups if g.linear and g.place == BLOCK), default=0)
        method = training.method
        if method == "full":
            self.trainable = counted.total
        elif method == "freeze":
            self.trainable = int(freeze_trainable(spec, groups, training.trainable_layers) * scale)
        else:
            self.trainable = lora_params(spec, groups, training.lora_rank, training.lora_targets)
        self.trainable_params = int(self.trainable)
        # frozen bytes: base weights under (Q)LoRA/freeze
        compute = 4 if training.precision == "fp32" else 2
        self.compute_bytes = compute
        if method in ("full",):
            self.frozen_bytes = 0.0
        elif method == "freeze":
            self.frozen_bytes = (counted.total - self.trainable) * compute
        else:
            linear = sum(g.numel for g in groups if g.linear and g.place == BLOCK) * scale
            other = counted.total - linear
            if method == "lora":
                linear_bytes = linear * compute
            elif method == "qlora":
                linear_bytes = linear * NF4_BYTES
            else:  # qlora-8bit: int8 weights and one fp32 scale per output row (LLM.int8 SCB)
                linear_bytes = linear + 4 * sum(g.shape[0] * g.count for g in groups if g.linear and g.place == BLOCK)
            self.frozen_bytes = linear_bytes + other * compute
        self.adafactor_state = _adafactor_elements(groups) * scale if training.optimizer == "adafactor" else 0.0
        self.activation_layers = min(training.trainable_layers, L) if method == "freeze" else L

    # -- bytes per trainable parameter --------------------------------------------------------
    def _state_bytes(self, layout: Layout) -> tuple[float, float, float]:
        """(weight, gradient, optimizer) bytes per trainable parameter. Mixed precision splits 16 B
        two ways with the same total: DeepSpeed and FSDP keep bf16 weights and gradients and an fp32
        master copy in the optimizer (2 + 2 + 12, the ZeRO paper's K = 12); torch autocast without
        them (the HF Trainer's DDP) keeps fp32 weights and gradients, which are their own master
        (4 + 4 + 8), and casts each weight to bf16 as it is used."""
        t = self.training
        weight = {"fp32": 4, "bf16": 2, "fp16": 2, "pure-bf16": 2}[t.precision]
        master = 4 if t.precision in ("bf16", "fp16") else 0
        if autocast(t, layout):
            weight, master = 4, 0
        grad = weight
        moment = 2 if t.precision == "pure-bf16" else 4
        if t.optimizer == "adamw":
            opt = master + 2 * moment
        elif t.optimizer == "adamw-8bit":
            opt = master + ADAM8_BYTES
        elif t.optimizer == "sgd":
            opt = master + moment  # momentum buffer
        else:  # adafactor: factored second moment, counted per matrix below
            opt = master
        return weight, grad, opt

    def estimate(self, layout: Layout, *, gpus_per_node: int = 1) -> Estimate:
        t, spec = self.training, self.spec
        tp, pp = layout.tp, layout.pp
        shard = layout.shard
        zero = layout.zero_level
        # the busiest pipeline stage's share of the parameters
        stage_layers = ceil(spec.layers / pp)
        stage_block = self.block * stage_layers / spec.layers
        stage_share = (stage_block + max(self.embed, self.head) if pp > 1 else self.param_count) / self.param_count
        split = (self.tp_split / tp + self.tp_whole) / self.param_count
        local = stage_share * split  # fraction of the model on one GPU before sharding
        trainable = self.trainable * local
        wb, gb, ob = self._state_bytes(layout)
        params = trainable * wb + self.frozen_bytes * local
        grads = trainable * gb
        opt = trainable * ob + (self.adafactor_state * local * 4 if t.optimizer == "adafactor" else 0)
        if zero >= 1:
            opt /= shard
        if zero >= 2:
            grads /= shard
        if zero >= 3:
            params /= shard
        host = 0.0
        if layout.offload in ("optimizer", "all"):
            host += opt + trainable * 4 / max(1, shard if zero >= 2 else 1)  # states + fp32 gradients on CPU
            opt = 0.0
            grads = 0.0 if zero >= 2 else grads
        if layout.offload == "all":
            host += params
            params = 0.0
        act = self.activation_bytes(layout, layout.micro_batch)
        # buffers of the forward/backward phase
        fb = 0.0
        if zero >= 3:
            gathered = max(2 * self.layer_max, self.largest) / tp
            fb += gathered * (wb if self.training.method == "full" else self.compute_bytes)
        # gradients live through the forward/backward pass when they accumulate over micro-batches,
        # or sit in DDP/DeepSpeed buffers; a single GPU without accumulation frees them each step
        persistent_grads = layout.dp * layout.cp > 1 or zero >= 1 or layout.grad_accum > 1
        if autocast(t, layout):
            fb += trainable * 2  # autocast's bf16 copy of every trainable weight, kept for the backward pass
        if t.method in ("qlora", "qlora-8bit"):
            fb += self.largest_linear * self.compute_bytes / tp  # one weight dequantised at a time
        if layout.sharding == "none" and layout.dp * layout.cp > 1:
            fb += trainable * gb  # torch DDP's reducer buckets hold a second copy of the gradients
        elif 1 <= zero <= 2:
            fb += 2 * spec.hidden * spec.hidden * gb  # DeepSpeed reduce buckets (reduce_bucket_size = h^2, double-buffered)
        # buffers of the optimizer step
        step = 0.0
        sharded_trainable = trainable / (shard if zero >= 1 else 1)
        if layout.offload != "none":
            step = 0.0
        elif t.optimizer in ("adamw", "adafactor") and layout.sharding in ("none", "fsdp", "fsdp-hybrid"):
            step = sharded_trainable * 4 if t.precision != "pure-bf16" else sharded_trainable * 2  # foreach temporaries
        elif zero == 1 or zero == 2:
            step = sharded_trainable * 4 if t.precision in ("bf16", "fp16") else 0.0  # fp32 gradient partition
        elif zero == 3:
            step = min(sharded_trainable, ZERO3_SUB_GROUP) * 4 if t.precision in ("bf16", "fp16") else 0.0
        fwd_bwd = act + (grads if persistent_grads else 0.0) + fb
        opt_step = grads + step
        overhead = CONTEXT_BYTES + (NCCL_BYTES if layout.world > 1 else 0)
        if fwd_bwd >= opt_step:
            phase, buffers = "forward/backward", fb
        else:
            phase, buffers = "optimizer step", step
        total = params + opt + max(fwd_bwd, opt_step) + overhead
        return Estimate(
            parameters=int(params), gradients=int(grads), optimizer_states=int(opt), activations=int(act),
            buffers=int(buffers), overhead=int(overhead), total=int(total), peak_phase=phase,
            host_bytes_per_node=int(host * min(gpus_per_node, layout.world)), param_count=self.param_count,
            trainable_params=self.trainable_params,
        )

    # -- activations ----------------------------------------------------------------------------
    def layer_activation_bytes(self, layout: Layout, micro_batch: int) -> tuple[float, float]:
        """(bytes one layer keeps for the backward pass, bytes of its full activations), on one GPU."""
        return layer_activations(self.spec, self.training, layout, micro_batch)

    def activation_bytes(self, layout: Layout, micro_batch: int) -> float:
        """Activations on the busiest pipeline stage at its peak.

        The first stage keeps ``min(p, m)`` micro-batches of its layers (1F1B); the last one also
        computes the loss. The loss peaks at the start of the backward pass with three fp32
        tensors of s·b·V: log-softmax's saved output, the loss gradient and log-softmax's input
        gradient (the model's compute-dtype logits and their fp32 copy are freed by then; measured
        with ``benchmarks/plan_vs_measured.py``). With full recomputation the layer being
        recomputed comes after the loss, so the larger of the two counts, not their sum.
        """
        spec, t = self.spec, self.training
        kept, full = self.layer_activation_bytes(layout, micro_batch)
        stage_layers = ceil(self.activation_layers / layout.pp)
        in_flight = min(layout.pp, layout.grad_accum) if layout.pp > 1 else 1
        s = t.seq_len // layout.cp
        sbh = s * micro_batch * spec.hidden
        # the final norm and the LM head's input (Korthikanti's extra terms, without dropout)
        edges = _norm_bytes(spec, t, layout) * sbh / (layout.tp if layout.sp else 1)
        logits = 12 * s * micro_batch * spec.vocab / layout.tp
        recomputing = full if layout.recompute == "full" else 0.0
        first = kept * stage_layers * in_flight + edges + recomputing
        last = kept * stage_layers + edges + max(logits, recomputing)
        if layout.pp == 1:
            return last
        return max(first, last)


def layer_activations(spec: ModelSpec, training: Training, layout: Layout, micro_batch: int) -> tuple[float, float]:
    """One transformer layer's activation bytes on one GPU: (kept for backward, all of them).

    Tensor by tensor (Korthikanti et al. 2022 §4; memory_formulas.md §2.6), with c bytes per element:
    replicated across TP ranks unless sequence-parallel: what each norm keeps with the input of
    the projection it feeds (``_norm_bytes``: 2c for LayerNorm, 4 + r + c for HF's RMSNorm) and,
    with dropout, one 1-byte mask per residual dropout; split across TP ranks: Q, K and V, the attention output, the MLP's intermediate
    tensors (gated: gate, up, act(gate), their product: 4·c·sbf; plain: 2·c·sbf), FlashAttention's
    fp32 log-sum-exp, or eager attention's scores (softmax output c bytes, or fp32 and a c-byte copy
    when the model upcasts, plus a dropout mask and output). With a GPT-3 layer (LayerNorm, 4h GeLU
    MLP, dropout, eager) this is exactly sbh(34 + 5as/h).
    """
    c = 4 if training.precision == "fp32" else 2
    s = training.seq_len // layout.cp
    b = micro_batch
    h = spec.hidden
    sb = s * b
    n, kv, d = spec.heads, spec.kv_heads, spec.head_dim
    gpt_style = spec.mlp == "plain"
    dropout = gpt_style  # GPT-2 style configs train with dropout; Llama-style ones have none
    replicated = spec.norms_per_layer * _norm_bytes(spec, training, layout) * sb * h
    if dropout:
        replicated += 2 * sb * h  # residual dropout masks
    if spec.mla:
        q_out = n * (spec.qk_nope_dim + spec.qk_rope_dim)
        latent = (spec.q_lora_rank + spec.kv_lora_rank + spec.qk_rope_dim)
        split = c * sb * (2 * latent + 2 * q_out + n * spec.v_head_dim * 2)
    else:
        split = c * sb * (n * d + 2 * kv * d + n * d)  # Q, K, V, attention output
    if spec.moe:
        per_token = spec.top_k * (h + 4 * spec.moe_intermediate) + 4 * spec.shared_intermediate
        mlp = c * sb * per_token + 4 * sb * spec.experts  # routed copies and expert MLPs, fp32 router logits
        moe_share = spec.moe_layers / spec.layers
        dense = c * sb * 4 * spec.intermediate
        split += moe_share * mlp + (1 - moe_share) * dense
    elif gpt_style:
        split += 2 * c * sb * spec.intermediate
    else:
        split += 4 * c * sb * spec.intermediate
    heads_local = n
    kernel = sdpa_kernel(spec, training)
    if kernel in ("flash", "efficient"):
        scores = 0.0
        split += 4 * sb * n  # log-sum-exp, fp32 (both fused kernels save it for their backward)
    elif kernel == "math":
        # torch's math SDPA (attention.cpp, _scaled_dot_product_attention_math): matmul(q, k^T),
        # softmax, matmul(probs, v) as separate autograd ops. The softmax output (b·n·s·s, c bytes;
        # fp32 here, no downcast) is saved by the second matmul, and K and V, repeat_interleave'd to
        # every query head (pre_process_group_query_attention_input), by the two matmuls. The
        # pre-softmax scores are freed (softmax saves its output); no log-sum-exp.
        scores = c * heads_local * s * training.seq_len * b
        split += 2 * c * sb * (n - kv) * d
    else:
        # HF Llama-style eager attention upcasts the softmax to fp32 and casts it back to the compute
        # dtype (eager_attention_forward: softmax(..., dtype=float32).to(query.dtype)); in fp32 the
        # cast is a no-op (Tensor.to returns self when the dtype already matches), one 4-byte copy
        per_score = c if gpt_style or c == 4 else 4 + c
        if dropout:
            per_score += 1 + c
        scores = per_score * heads_local * s * training.seq_len * b  # with CP: local queries x all keys
        if not gpt_style and not spec.mla:
            split += 2 * c * sb * (n - kv) * d  # eager attention repeats K and V to every query head
    tp = layout.tp
    full = replicated / (tp if layout.sp else 1) + (split + scores) / tp
    if layout.recompute == "full":
        kept = residual_bytes(training, layout) * sb * h / (tp if layout.sp else 1)  # the layer input only (Korthikanti: 2sbh)
    elif layout.recompute == "selective":
        kept = replicated / (tp if layout.sp else 1) + split / tp  # attention scores recomputed
    else:
        kept = full
    if training.method in ("lora", "qlora", "qlora-8bit"):
        kept += c * sb * training.lora_rank * 7 / tp  # the rank-r intermediate of each adapter
    return kept, full


def sdpa_kernel(spec: ModelSpec, training: Training) -> str:
    """The attention kernel a layer runs: "eager" (``--attention eager``), else the one torch's
    ``scaled_dot_product_attention`` picks for transformers' "sdpa" implementation on
    ``training.device``: "flash", "efficient" (memory-efficient) or "math".

    CUDA (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, ``select_sdp_backend``; torch 2.11,
    the H200 run): FlashAttention and cuDNN attention take fp16 and bf16 only
    (``check_dtypes_low_precision``); the memory-efficient kernel takes fp32 but not fewer K/V heads
    than query heads (``check_batch_size_and_num_heads_dense<false /*supports_grouped_query_attention*/>``;
    pytorch/pytorch#191085, July 2026, adds GQA to it on NVIDIA, as current main has it).
    transformers passes ``enable_gqa=True`` for a GQA model without a padding mask and head_dim <= 256
    (integrations/sdpa_attention.py, ``use_gqa_in_sdpa``). So fp32 with GQA runs the math kernel,
    which materialises the scores: the 0.2B fp32 case of benchmarks/plan_vs_measured.py peaked at
    8,534,358,528 B on an H200 where the fused-kernel accounting gave 6,111,309,824, and at
    8,458,859,060 B on the CPU with the math kernel forced (this accounting: 8,458,022,912). fp32
    with as many K/V heads as query heads runs the memory-efficient kernel, whose saved tensors are
    the fused ones (Q, K, V, output, fp32 log-sum-exp). A torch with #191085 runs fp32 GQA in the memory-efficient kernel too, and the
    estimate then overstates fp32 GQA by the scores.

    CPU (aten/src/ATen/native/transformers/sdp_utils_cpp.cpp, ``use_flash_attention_cpp``): the
    CPU flash kernel takes fp32, bf16 and fp16 and GQA, so fp32 stays fused there.
    """
    if training.attention == "eager":
        return "eager"
    if training.precision != "fp32":
        return "flash"  # bf16/fp16 compute (autocast casts Q, K and V to bf16); GQA supported
    if training.device == "cpu":
        return "flash"
    gqa = spec.kv_heads < spec.heads and not spec.mla
    if gqa and spec.head_dim <= 256:
        return "math"
    return "efficient"


def residual_bytes(training: Training, layout: Layout) -> int:
    """Bytes of the residual stream: fp32 when the weights are (fp32 training, or full fine-tuning
    under autocast, whose embedding returns fp32), else the 16-bit compute dtype."""
    if training.precision == "fp32" or (autocast(training, layout) and training.method in ("full", "freeze")):
        return 4
    return 2


def autocast(training: Training, layout: Layout) -> bool:
    """Mixed precision by torch autocast over fp32 weights: the HF Trainer without DeepSpeed or FSDP."""
    return training.precision in ("bf16", "fp16") and layout.sharding == "none"


def _norm_bytes(spec: ModelSpec, training: Training, layout: Layout) -> int:
    """Bytes per token and hidden unit one norm keeps for the backward pass, with the input of
    the projection it feeds (c: the compute dtype's bytes).

    LayerNorm (torch's native kernel): its input and its output, c + c (Korthikanti's 4sbh for two).
    RMSNorm as Hugging Face writes it (``LlamaRMSNorm``): the input upcast to fp32 (4), the
    normalised tensor in the residual stream's dtype (r) for the weight's gradient, and its output
    in the compute dtype (c) for the next projection: 4 + r + c. The residual stream is fp32 under
    autocast and in fp32 training, else the compute dtype. Measured with saved-tensor hooks on
    ``LlamaForCausalLM``: 8 B per norm in bf16, 10 B under autocast. Under (Q)LoRA the norm weight
    is frozen, so the normalised tensor is not kept: 4 + c.
    """
    c = 4 if training.precision == "fp32" else 2
    if spec.norm == "layer":
        return 2 * c
    if training.method in ("lora", "qlora", "qlora-8bit"):
        return 4 + c  # a frozen norm weight needs no copy of the normalised tensor
    return 4 + residual_bytes(training, layout) + c


def _tp_splits(g: TensorGroup) -> bool:
    """Linear weights and biases split across TP ranks, and so do the vocabulary-parallel embedding
    and head; norms and routers are replicated."""
    if g.place in (EMBED, HEAD):
        return g.name != "final_norm.weight" and g.name != "final_norm.bias"
    return g.linear or (g.name.endswith(".bias") and "norm" not in g.name)


def _largest_layer(spec: ModelSpec, groups: list[TensorGroup]) -> float:
    """Parameters of the biggest transformer layer (a MoE layer when there is one)."""
    dense_layers = spec.layers - spec.moe_layers
    shared = sum(g.numel for g in groups if g.place == BLOCK and not g.name.startswith(("mlp.", "moe.")))
    dense = sum(g.numel for g in groups if g.name.startswith("mlp.")) / dense_layers if dense_layers else 0
    moe = sum(g.numel for g in groups if g.name.startswith("moe.")) / spec.moe_layers if spec.moe_layers else 0
    return shared / spec.layers + max(dense, moe)


def _adafactor_elements(groups: list[TensorGroup]) -> float:
    """Adafactor state elements: rows + columns per matrix, the full size of a vector
    (HF ``Adafactor``: ``exp_avg_sq_row`` and ``exp_avg_sq_col`` for factored tensors)."""
    return sum(((g.shape[0] + g.shape[1]) if len(g.shape) == 2 else g.size) * g.count for g in groups)


def _check_training(spec: ModelSpec, t: Training) -> None:
    for value, allowed, flag in ((t.method, METHODS, "--method"), (t.precision, PRECISIONS, "--precision"),
                                 (t.optimizer, OPTIMIZERS, "--optimizer"), (t.attention, ATTENTION, "--attention"),
                                 (t.device, DEVICES, "device")):
        if value not in allowed:
            raise InputError(f"{flag}: {value!r} is not one of {', '.join(allowed)}")
    if t.seq_len < 1:
        raise InputError(f"--seq-len: expected 1 or more, got {t.seq_len}")
    if t.method in ("lora", "qlora", "qlora-8bit") and t.lora_rank < 1:
        raise InputError(f"--lora-rank: expected 1 or more, got {t.lora_rank}")
    if t.method == "freeze" and t.trainable_layers < 1:
        raise InputError(f"--trainable-layers: expected 1 or more, got {t.trainable_layers}")


def check_layout(spec: ModelSpec, layout: Layout) -> str | None:
    """Why a layout cannot run this model, or None."""
    if layout.sharding not in SHARDINGS:
        return f"sharding {layout.sharding!r} is not one of {', '.join(SHARDINGS)}"
    if layout.recompute not in RECOMPUTE:
        return f"recompute {layout.recompute!r} is not one of {', '.join(RECOMPUTE)}"
    if layout.offload not in OFFLOAD:
        return f"offload {layout.offload!r} is not one of {', '.join(OFFLOAD)}"
    if min(layout.dp, layout.tp, layout.pp, layout.cp, layout.micro_batch, layout.grad_accum) < 1:
        return "every parallel degree, the micro-batch and gradient accumulation must be 1 or more"
    if spec.heads % layout.tp or (spec.kv_heads % layout.tp and layout.tp % spec.kv_heads):
        return f"TP {layout.tp} does not divide the {spec.heads} attention heads / {spec.kv_heads} KV heads"
    if layout.pp > spec.layers:
        return f"PP {layout.pp} is more than the {spec.layers} layers"
    if layout.pp > 1 and layout.zero_level >= 2:
        return "pipeline parallelism with ZeRO-2/3 or FSDP (DeepSpeed forbids PP with gradient sharding)"
    if layout.offload == "all" and layout.zero_level < 3:
        return "parameter offload needs ZeRO-3 or FSDP"
    if layout.offload != "none" and layout.sharding == "none":
        return "offload needs DeepSpeed ZeRO or FSDP"
    if layout.sp and layout.tp == 1:
        return "sequence parallelism needs TP > 1"
    return None
