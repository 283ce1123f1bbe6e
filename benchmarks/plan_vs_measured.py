"""Predicted against measured peak memory for a few real training steps of small models (full
fine-tuning in fp32, bf16 autocast and pure bf16, with and without recomputation, and LoRA; one
device, no ZeRO). Target (issue 6): within +-10 %.

What is compared: the planner's per-GPU ``total`` minus its ``overhead`` (the CUDA context and
NCCL, which the allocator does not see) against the allocator's peak over three optimizer steps:
- on a GPU, ``torch.cuda.max_memory_allocated()`` (reset after the model is built; the weights
  already allocated count, as they do in the estimate);
- on a CPU-only machine, the peak of the bytes held by live tensor storages, tracked by a
  ``TorchDispatchMode`` that records every storage an operator returns and drops it when the
  storage is freed (``weakref.finalize``). tracemalloc does not see torch's allocations and an RSS
  delta mixes in the allocator's caching, so neither is used. The weights and inputs that exist
  before the first step are counted up front.

The estimate follows the attention kernel torch picks on the measuring device
(``preflight.plan.memory.sdpa_kernel``): fp32 with grouped-query attention runs SDPA's math kernel
on CUDA (it materialises the b·n·s·s softmax) but the fused CPU flash kernel on the CPU, so the CPU
run compares against ``Training(device="cpu")``. The CPU cases marked "CUDA's kernel" force the
kernel the CUDA estimate names (``torch.nn.attention.sdpa_kernel``) and compare against the CUDA
estimate: the math kernel is the same composite code on both devices.

The models: ``transformers``' Llama/Qwen2 classes when transformers is installed (what users
train), else a compact Llama-style model written here with the same tensors (RMSNorm upcast to
fp32, grouped-query SDPA attention, SwiGLU, untied or tied head, fp32 loss); LoRA through a
hand-written adapter (A: r x in, B: out x r, fp32, on every linear of the blocks). The optimizer is
torch AdamW with foreach kernels (the HF ``adamw_torch`` the planner's settings name).

    python benchmarks/plan_vs_measured.py [--device auto|cuda|cpu] [--steps N] [--out summary.json]
                                          [--no-transformers]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preflight.plan.memory import Layout, ModelMemory, Training, sdpa_kernel  # noqa: E402
from preflight.plan.model import load_catalog, spec_from_config  # noqa: E402
from preflight.plan.params import tensor_groups  # noqa: E402

MIB = 2**20


@dataclass(frozen=True)
class Case:
    name: str
    config: dict
    seq_len: int
    batch: int
    method: str = "full"
    precision: str = "bf16"
    recompute: str = "none"
    lora_rank: int = 16
    attention: str = "flash"  # "flash": SDPA's fused kernels; "eager": transformers' eager attention
    accumulation: int = 1  # micro-batches per optimizer step
    cuda_kernel: bool = False  # on the CPU: force the SDPA kernel CUDA runs, and compare with the CUDA estimate


def llama(hidden: int, layers: int, heads: int, kv: int, ffn: int, vocab: int) -> dict:
    return {"model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ffn,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "tie_word_embeddings": False}


def gpu_cases() -> list[Case]:
    catalog = load_catalog()
    qwen = dict(catalog["qwen2.5-0.5b"].config)
    llama1b = dict(catalog["llama-3.2-1b"].config)
    small = llama(1024, 8, 16, 4, 2816, 32000)
    mid = llama(2048, 16, 16, 4, 5632, 32000)
    return [
        Case("qwen2.5-0.5b full bf16-autocast", qwen, 1024, 4),
        Case("qwen2.5-0.5b full bf16-autocast recompute", qwen, 2048, 4, recompute="full"),
        Case("llama 1.0B full pure-bf16", mid, 2048, 2, precision="pure-bf16"),
        Case("llama 0.2B full fp32", small, 1024, 4, precision="fp32"),
        Case("llama 0.2B full bf16-autocast eager", small, 1024, 2, attention="eager"),
        Case("llama 0.2B full pure-bf16 accumulate 4", small, 1024, 4, precision="pure-bf16", accumulation=4),
        Case("llama-3.2-1b LoRA r16 bf16", llama1b, 2048, 4, method="lora"),
    ]


def cpu_cases() -> list[Case]:
    tiny = llama(256, 4, 8, 2, 688, 4096)
    return [
        Case("tiny full fp32", tiny, 256, 4, precision="fp32"),
        Case("tiny full bf16-autocast", tiny, 256, 4),
        Case("tiny full pure-bf16", tiny, 256, 4, precision="pure-bf16"),
        Case("tiny full fp32 recompute", tiny, 256, 4, precision="fp32", recompute="full"),
        Case("tiny full bf16-autocast eager", tiny, 256, 4, attention="eager"),
        Case("tiny full fp32 accumulate 2", tiny, 256, 4, precision="fp32", accumulation=2),
        Case("tiny LoRA r16 bf16", tiny, 256, 4, method="lora"),
        Case("tiny full fp32, CUDA's kernel (math)", tiny, 256, 4, precision="fp32", cuda_kernel=True),
        Case("tiny full fp32 eager", tiny, 256, 4, precision="fp32", attention="eager"),
    ]


# -- a compact Llama-style model, used when transformers is absent ------------------------------

class RMSNorm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # as transformers' LlamaRMSNorm
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        h, n, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        d = c.get("head_dim") or h // n
        bias = c["model_type"] == "qwen2"
        self.n, self.kv, self.d = n, kv, d
        self.eager = c.get("_eager", False)
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(h), RMSNorm(h)
        self.q_proj = nn.Linear(h, n * d, bias=bias)
        self.k_proj = nn.Linear(h, kv * d, bias=bias)
        self.v_proj = nn.Linear(h, kv * d, bias=bias)
        self.o_proj = nn.Linear(n * d, h, bias=False)
        f = c["intermediate_size"]
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(h, f, bias=False), nn.Linear(h, f, bias=False), \
            nn.Linear(f, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        y = self.input_layernorm(x)
        q = self.q_proj(y).view(b, s, self.n, self.d).transpose(1, 2)
        k = self.k_proj(y).view(b, s, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(y).view(b, s, self.kv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.eager:  # as transformers' eager_attention_forward: fp32 softmax, cast back
            k, v = k.repeat_interleave(self.n // self.kv, 1), v.repeat_interleave(self.n // self.kv, 1)
            scores = (q @ k.transpose(2, 3)) * self.d**-0.5
            scores = scores + torch.full((s, s), float("-inf"), device=x.device, dtype=scores.dtype).triu(1)
            a = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv != self.n)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, s, self.n * self.d))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class CompactLM(nn.Module):
    def __init__(self, c: dict) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"])
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("tie_word_embeddings"):
            self.lm_head.weight = self.embed_tokens.weight
        self.head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.checkpointing = False

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = input_ids.shape[1]
        pos = torch.arange(s, device=input_ids.device, dtype=torch.float32)
        inv = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2, device=input_ids.device).float() / self.head_dim))
        angles = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)
        x = self.embed_tokens(input_ids)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        for layer in self.layers:
            if self.checkpointing:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


# -- LoRA ---------------------------------------------------------------------------------------------

class LoRALinear(nn.Module):
    """y = base(x) + B(A(x)) * alpha / r, base frozen; A and B train in fp32 (PEFT's layout)."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


def add_lora(model: nn.Module, rank: int) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = [m for name, m in model.named_modules() if name.endswith(("layers", "h")) and isinstance(m, nn.ModuleList)]
    targets = [(parent, child_name, child) for block in blocks[0] for parent in block.modules()
               for child_name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for parent, child_name, child in targets:
        setattr(parent, child_name, LoRALinear(child, rank))


# -- building and measuring ---------------------------------------------------------------------------

def build(case: Case, device: torch.device, use_transformers: bool) -> nn.Module:
    torch.manual_seed(0)
    if use_transformers:
        import transformers

        config = dict(case.config)
        model_type = config.pop("model_type")
        hf_config = transformers.AutoConfig.for_model(model_type, **config)
        hf_config._attn_implementation = "sdpa" if case.attention == "flash" else "eager"
        with device:
            model = transformers.AutoModelForCausalLM.from_config(hf_config)
        if case.recompute == "full":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    else:
        with device:
            model = CompactLM({**case.config, "_eager": case.attention == "eager"})
        model.checkpointing = case.recompute == "full"
    if case.precision == "pure-bf16" or case.method == "lora":
        model.to(torch.bfloat16)  # pure bf16; or a bf16 base under LoRA (its adapters are fp32)
    if case.method == "lora":
        add_lora(model, case.lora_rank)
    model.train()
    return model


def loss_of(model: nn.Module, ids: torch.Tensor, use_transformers: bool) -> torch.Tensor:
    if use_transformers:
        return model(input_ids=ids, labels=ids).loss
    return model(ids, ids)


class LiveStorageBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Bytes held by live tensor storages, and their peak (CPU measurement)."""

    def __init__(self, existing: list[torch.Tensor]) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0
        for t in existing:
            self._add(t, finalize=False)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def _add(self, t: torch.Tensor, finalize: bool = True) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if not storage.nbytes() or key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        if finalize:
            weakref.finalize(storage, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def estimate_device(case: Case, device: torch.device) -> str:
    """Whose kernels the estimate follows: the measuring device's, or CUDA's where the case forces them."""
    return "cuda" if device.type == "cuda" or case.cuda_kernel else "cpu"


def forced_kernel(case: Case, device: torch.device) -> contextlib.AbstractContextManager:
    """On the CPU, for a ``cuda_kernel`` case, restrict SDPA to the backend the CUDA estimate names."""
    if device.type == "cuda" or not case.cuda_kernel or case.attention == "eager":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend
    from torch.nn.attention import sdpa_kernel as restrict

    name = sdpa_kernel(spec_from_config(case.config, name=case.name, source="benchmark"), training(case, "cuda"))
    # the CPU has no memory-efficient kernel; its flash kernel keeps the same tensors (Q, K, V, output, fp32 LSE)
    backend = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
               "efficient": SDPBackend.FLASH_ATTENTION}[name]
    return restrict(backend)


def measure(case: Case, device: torch.device, steps: int, use_transformers: bool) -> int:
    model = build(case, device, use_transformers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    ids = torch.randint(0, case.config["vocab_size"], (case.batch, case.seq_len), device=device)
    autocast = case.precision == "bf16"
    tracker = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        tracker = LiveStorageBytes([*model.parameters(), *model.buffers(), ids])
        tracker.__enter__()
    try:
        with forced_kernel(case, device):
            run_steps(model, optimizer, ids, case, device, steps, autocast, use_transformers)
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = tracker.peak
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return peak


def run_steps(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, case: Case,
              device: torch.device, steps: int, autocast: bool, use_transformers: bool) -> None:
    for _ in range(steps):
        for _ in range(case.accumulation):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_of(model, ids, use_transformers)
            loss.backward()
            del loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def training(case: Case, device: str) -> Training:
    return Training(method=case.method, precision=case.precision, seq_len=case.seq_len, lora_rank=case.lora_rank,
                    attention=case.attention, device=device)


def predict(case: Case, device: str) -> tuple[int, dict]:
    """The estimate without overhead, following ``device``'s attention kernels ("cuda" or "cpu")."""
    spec = spec_from_config(case.config, name=case.name, source="benchmark")
    est = ModelMemory(spec, tensor_groups(spec), training(case, device)).estimate(
        Layout(micro_batch=case.batch, grad_accum=case.accumulation, recompute=case.recompute))
    return est.total - est.overhead, est.to_json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--steps", type=int, help="optimizer steps per case (default 3 on a GPU, 2 on the CPU)")
    parser.add_argument("--out", type=Path, help="also write a JSON summary here")
    parser.add_argument("--no-transformers", action="store_true", help="use the compact model even if transformers is installed")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    try:
        import transformers  # noqa: F401

        use_transformers = not args.no_transformers
    except ImportError:
        use_transformers = False
    cases = gpu_cases() if device.type == "cuda" else cpu_cases()
    args.steps = args.steps or (3 if device.type == "cuda" else 2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    how = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "live tensor storages (dispatch mode)"
    models = "transformers" if use_transformers else "compact Llama-style model (this script)"
    print(f"{name}; torch {torch.__version__}; models: {models}; measured: {how}; {args.steps} steps each")
    print(f"{'case':42} {'seq x batch':>11} {'predicted':>10} {'measured':>10} {'error':>7}")
    rows = []
    start = time.perf_counter()
    for case in cases:
        estimated_for = estimate_device(case, device)
        predicted, breakdown = predict(case, estimated_for)
        spec = spec_from_config(case.config, name=case.name, source="benchmark")
        kernel = sdpa_kernel(spec, training(case, estimated_for))
        measured = measure(case, device, args.steps, use_transformers)
        error = (predicted - measured) / measured
        rows.append({"case": case.name, "seq_len": case.seq_len, "micro_batch": case.batch, "method": case.method,
                     "attention": case.attention, "accumulation": case.accumulation,
                     "precision": case.precision, "recompute": case.recompute, "estimated_for": estimated_for,
                     "attention_kernel": kernel, "predicted_bytes": predicted,
                     "measured_bytes": measured, "error": round(error, 4), "within_10_percent": abs(error) <= 0.10,
                     "estimate": breakdown})
        print(f"{case.name:42} {case.seq_len:>5} x {case.batch:<3} {predicted / MIB:8.0f} MiB {measured / MIB:8.0f} MiB "
              f"{error * 100:+6.1f}%")
    within = sum(r["within_10_percent"] for r in rows)
    worst = max(abs(r["error"]) for r in rows)
    print(f"\n{within}/{len(rows)} within +-10 % (worst {worst * 100:.1f} %); {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "models": models,
                                        "measured_with": how, "steps": args.steps, "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
