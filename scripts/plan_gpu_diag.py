"""Where the planner's fp32 estimate meets CUDA: which SDPA kernel ran, and the peak memory by phase.

Builds one case of ``benchmarks/plan_vs_measured.py`` (default: "llama 0.2B full fp32", seq 1024 x
batch 4; transformers' Llama when installed, else the benchmark's compact model: torch only), then
for each of a few optimizer steps prints the allocator's peak in each phase, resetting the peak at
every phase start:

- forward: the embedding up to the LM head's output (a forward hook on ``lm_head`` ends it);
- loss: the rest of the model's forward (the fp32 cross-entropy: log-softmax of s·b·V);
- backward: ``loss.backward()``;
- optimizer step: ``AdamW.step()`` (foreach) and ``zero_grad``.

It also prints which SDPA kernel torch chose for one layer's Q, K and V (``torch._fused_sdp_choice``,
and the aten operators a ``TorchDispatchMode`` sees when that attention runs with gradients), the
memory left allocated after a step beyond weights and optimizer states (cuBLAS workspaces and the
like, which the estimate does not count), and the estimate's components for CUDA and for the CPU
(``preflight.plan.memory``; the difference is the math kernel's scores).

On a GPU: ``torch.cuda.max_memory_allocated`` with ``reset_peak_memory_stats``. On a CPU (to try the
script): the benchmark's live-storage tracker, whose peak is reset the same way.

    python scripts/plan_gpu_diag.py [--case "llama 0.2B full fp32"] [--steps 2] [--device auto|cuda|cpu]
                                    [--seq N] [--batch N] [--no-transformers] [--cuda-kernel]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import plan_vs_measured as bench  # noqa: E402

from preflight.plan.memory import Layout, ModelMemory, layer_activations, sdpa_kernel  # noqa: E402
from preflight.plan.model import spec_from_config  # noqa: E402
from preflight.plan.params import tensor_groups  # noqa: E402

MIB = 2**20


class Meter:
    """The allocator's current bytes and the peak since the last ``reset``."""

    def __init__(self, device: torch.device, existing: list[torch.Tensor]) -> None:
        self.device = device
        self.tracker = None
        if device.type == "cpu":
            self.tracker = bench.LiveStorageBytes(existing)
            self.tracker.__enter__()

    def reset(self) -> None:
        if self.tracker is None:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.tracker.peak = self.tracker.current

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) if self.tracker is None else self.tracker.peak

    def now(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.tracker is None else self.tracker.current

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.__exit__(None, None, None)


class OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.names.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def which_kernel(case: bench.Case, device: torch.device) -> str:
    """The SDPA kernel for one layer's shapes in the case's dtype (GQA passed as transformers does)."""
    c = case.config
    n, kv = c["num_attention_heads"], c["num_key_value_heads"]
    d = c.get("head_dim") or c["hidden_size"] // n
    dtype = torch.float32 if case.precision == "fp32" else torch.bfloat16
    shape = (case.batch, case.seq_len)
    q = torch.randn(shape[0], n, shape[1], d, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(shape[0], kv, shape[1], d, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn(shape[0], kv, shape[1], d, device=device, dtype=dtype, requires_grad=True)
    gqa = kv != n
    with bench.forced_kernel(case, device):  # a no-op unless --cuda-kernel on the CPU
        return _kernel(q, k, v, gqa)


def _kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gqa: bool) -> str:
    try:
        from torch.nn.attention import SDPBackend

        index = int(torch._fused_sdp_choice(q, k, v, is_causal=True, enable_gqa=gqa))
        choice = {int(b.value): n for n, b in SDPBackend.__members__.items()}.get(index, str(index))
    except (AttributeError, RuntimeError, TypeError) as err:
        choice = f"unavailable ({type(err).__name__})"
    with OpNames() as seen:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    del out
    fused = [name for name in seen.names if name.startswith("_scaled_dot_product") or name.startswith("_efficient")
             or name.startswith("_flash")]
    ran = fused[0] if fused else "math (no fused operator; ran: " + ", ".join(dict.fromkeys(seen.names)) + ")"
    return f"_fused_sdp_choice: {choice}; operator seen: {ran}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="llama 0.2B full fp32", help="a case name of the benchmark's GPU list")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--seq", type=int, help="override the case's sequence length")
    parser.add_argument("--batch", type=int, help="override the case's micro-batch")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--cuda-kernel", action="store_true",
                        help="on the CPU, force the SDPA kernel the CUDA estimate names (the math kernel for fp32 GQA)")
    args = parser.parse_args()
    start = time.perf_counter()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    matches = [c for c in bench.gpu_cases() if c.name == args.case]
    if not matches:
        print(f"no case {args.case!r}; cases: " + "; ".join(c.name for c in bench.gpu_cases()))
        return 2
    case = replace(matches[0], seq_len=args.seq or matches[0].seq_len, batch=args.batch or matches[0].batch,
                   cuda_kernel=args.cuda_kernel)
    try:
        import transformers  # noqa: F401

        use_transformers = not args.no_transformers
    except ImportError:
        use_transformers = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}; torch {torch.__version__}; case {case.name!r}, seq {case.seq_len} x batch {case.batch}; "
          f"model: {'transformers' if use_transformers else 'compact (benchmark)'}")
    if device.type == "cuda":
        b = torch.backends.cuda
        print(f"SDPA enabled: flash {b.flash_sdp_enabled()}, efficient {b.mem_efficient_sdp_enabled()}, "
              f"math {b.math_sdp_enabled()}, cudnn {b.cudnn_sdp_enabled()}; "
              f"CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG', '(default)')}; "
              f"TF32 matmul {b.matmul.allow_tf32}")
    print("SDPA kernel for one layer:", which_kernel(case, device))

    # the estimate, for CUDA and for the CPU
    spec = spec_from_config(case.config, name=case.name, source="diag")
    layout = Layout(micro_batch=case.batch, grad_accum=case.accumulation, recompute=case.recompute)
    print("\npredicted (bytes; MiB)")
    for dev in ("cuda", "cpu"):
        t = bench.training(case, dev)
        mem = ModelMemory(spec, tensor_groups(spec), t)
        est = mem.estimate(layout)
        kept, _ = layer_activations(spec, t, layout, case.batch)
        logits = 12 * case.seq_len * case.batch * spec.vocab
        print(f"  device={dev}: kernel {sdpa_kernel(spec, t)}; total - overhead {est.total - est.overhead} "
              f"({(est.total - est.overhead) / MIB:.0f}); parameters {est.parameters / MIB:.0f}, gradients "
              f"{est.gradients / MIB:.0f}, optimizer {est.optimizer_states / MIB:.0f}, activations "
              f"{est.activations / MIB:.0f} (per layer {kept / MIB:.1f} x {spec.layers}, loss 3 x fp32 s*b*V "
              f"{logits / MIB:.0f}), buffers {est.buffers / MIB:.0f}, peak phase {est.peak_phase}")

    # the measurement, by phase
    model = bench.build(case, device, use_transformers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    ids = torch.randint(0, case.config["vocab_size"], (case.batch, case.seq_len), device=device)
    autocast = case.precision == "bf16"
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if device.type == "cuda":
        torch.cuda.synchronize()
    meter = Meter(device, [*model.parameters(), *model.buffers(), ids])
    phase: dict[str, int] = {}

    def end_forward(_module, _inputs, _output) -> None:  # noqa: ANN001
        phase["forward"] = meter.peak()
        meter.reset()

    hook = model.lm_head.register_forward_hook(end_forward)
    print(f"\nmeasured peak by phase (MiB); weights {weights / MIB:.0f} MiB")
    print(f"{'step':>4} {'forward':>9} {'loss':>9} {'backward':>9} {'opt step':>9} {'step peak':>10} "
          f"{'after step':>11} {'after - states':>15}")
    overall = 0
    try:
        for step in range(1, args.steps + 1):
            meter.reset()
            step_peak = 0
            for _ in range(case.accumulation):
                with bench.forced_kernel(case, device), \
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = bench.loss_of(model, ids, use_transformers)
                phase["loss"] = meter.peak()
                step_peak = max(step_peak, phase["forward"], phase["loss"])
                meter.reset()
                with bench.forced_kernel(case, device):
                    loss.backward()
                del loss
                phase["backward"] = meter.peak()
                step_peak = max(step_peak, phase["backward"])
                meter.reset()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            phase["step"] = meter.peak()
            step_peak = max(step_peak, phase["step"])
            overall = max(overall, step_peak)
            states = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                         if torch.is_tensor(t) and t.device.type == device.type)
            after = meter.now()
            print(f"{step:>4} {phase['forward'] / MIB:9.0f} {phase['loss'] / MIB:9.0f} {phase['backward'] / MIB:9.0f} "
                  f"{phase['step'] / MIB:9.0f} {step_peak / MIB:10.0f} {after / MIB:11.1f} "
                  f"{(after - weights - states - ids.numel() * ids.element_size()) / MIB:15.1f}")
    finally:
        hook.remove()
        meter.close()
    print(f"\npeak over {args.steps} steps: {overall} bytes ({overall / MIB:.0f} MiB); "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
