"""The estimator against a real training step on the CPU (benchmarks/plan_vs_measured.py, its
compact Llama-style model): the peak of live tensor storages over two optimizer steps must be
within the issue's +-10 % of the prediction. Skipped without torch."""

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
], ids=lambda c: c.name)
def test_prediction_within_ten_percent_of_a_real_step(case):
    predicted, _ = bench.predict(case)
    measured = bench.measure(case, torch.device("cpu"), 2, use_transformers=False)
    assert abs(predicted - measured) / measured <= 0.10, (predicted, measured)


def test_the_tracker_sees_what_it_should():
    """A check that could not fail would be no check: twice the batch must measure more."""
    case = bench.Case("fp32", SMALL, 128, 2, precision="fp32")
    one = bench.measure(case, torch.device("cpu"), 2, use_transformers=False)
    two = bench.measure(replace(case, batch=4), torch.device("cpu"), 2, use_transformers=False)
    assert two > one * 1.1
