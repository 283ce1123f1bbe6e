"""The estimator against a real training step on the CPU (benchmarks/plan_vs_measured.py, its
compact Llama-style model): the peak of live tensor storages over two optimizer steps must be
within the issue's +-10 % of the prediction. Skipped without torch.

The prediction follows the CPU's attention kernels (``Training(device="cpu")``): fp32 SDPA stays in
the fused CPU flash kernel, where CUDA runs the math kernel for fp32 with GQA. The case marked
``cuda_kernel`` forces that math kernel on the CPU and is compared with the CUDA estimate."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import plan_vs_measured as bench  # noqa: E402

SMALL = bench.llama(128, 2, 4, 2, 344, 1024)


@pytest.mark.parametrize("case", [
    bench.Case("fp32", SMALL, 128, 2, precision="fp32"),
    bench.Case("bf16 autocast, 2 micro-batches", SMALL, 128, 2, accumulation=2),
    bench.Case("LoRA", SMALL, 128, 2, method="lora"),
    bench.Case("fp32 full recompute", SMALL, 128, 2, precision="fp32", recompute="full"),
    bench.Case("fp32, CUDA's SDPA kernel (math)", SMALL, 128, 2, precision="fp32", cuda_kernel=True),
    bench.Case("fp32 eager", SMALL, 128, 2, precision="fp32", attention="eager"),
], ids=lambda c: c.name)
def test_prediction_within_ten_percent_of_a_real_step(case):
    cpu = torch.device("cpu")
    predicted, _ = bench.predict(case, bench.estimate_device(case, cpu))
    measured = bench.measure(case, cpu, 2, use_transformers=False)
    assert abs(predicted - measured) / measured <= 0.10, (predicted, measured)


def test_the_math_kernel_keeps_the_scores_the_cuda_estimate_adds():
    """Forcing CUDA's fp32 GQA kernel (math) on the CPU must cost what the CUDA estimate adds over
    the CPU one (the fp32 softmax per layer, K and V repeated to every head, less the LSE), within
    10 % of that difference; at seq 256 the scores dominate."""
    case = bench.Case("fp32", SMALL, 256, 2, precision="fp32")
    math_case = replace(case, cuda_kernel=True)
    cpu = torch.device("cpu")
    added = bench.predict(math_case, "cuda")[0] - bench.predict(case, "cpu")[0]
    measured = bench.measure(math_case, cpu, 2, False) - bench.measure(case, cpu, 2, False)
    assert added > 0 and abs(added - measured) / measured <= 0.10, (added, measured)


def test_the_tracker_sees_what_it_should():
    """A check that could not fail would be no check: twice the batch must measure more."""
    case = bench.Case("fp32", SMALL, 128, 2, precision="fp32")
    one = bench.measure(case, torch.device("cpu"), 2, use_transformers=False)
    two = bench.measure(replace(case, batch=4), torch.device("cpu"), 2, use_transformers=False)
    assert two > one * 1.1
