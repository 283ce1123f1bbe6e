"""Pure-Python near-duplicate signing in worker processes (real spawned workers): the same keys
as signing in this process, in order, bounded, and surviving a worker that dies."""

from __future__ import annotations

import os
import random
import signal
import sys

import pytest

from preflight.data import dedup, sign_pool


def _texts(n: int) -> list[str]:
    rng = random.Random(8)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 7))) for _ in range(500)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for _ in range(n)]
    texts += ["北京是中国的首都，有三千多年的建城史", "x", ""]
    return [dedup.normalise(t) for t in texts]


def _index(texts: list[str], batch: int = 50) -> dedup.LshIndex:
    index = dedup.LshIndex(*dedup.bands_rows(0.8))
    for start in range(0, len(texts), batch):
        index.add_batch(list(range(start, min(start + batch, len(texts)))), texts[start:start + batch])
    return index


@pytest.fixture
def no_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)


def test_workers_sign_what_this_process_signs(monkeypatch, no_numpy) -> None:
    texts = _texts(600)
    here = [column.tolist() for column in _index(texts).keys]
    monkeypatch.setattr(sign_pool, "POOL_FROM", 100)
    monkeypatch.setattr(sign_pool, "workers_available", lambda: 2)
    index = _index(texts)
    assert index._pool is not None  # the workers really signed the later batches
    assert [column.tolist() for column in index.keys] == here
    assert index._pool is None  # finished and stopped once the keys were read
    assert index.candidates() == _index(texts).candidates()


@pytest.mark.parametrize("size", [20, 1000])  # 1,000: texts and keys each fill a pipe's buffer
def test_in_flight_batches_are_bounded_and_come_back_in_order(size: int) -> None:
    texts = _texts(3000 if size > 100 else 400)
    batches = [texts[i:i + size] for i in range(0, len(texts), size)]
    pool = sign_pool.SignPool(32, 8, workers=2)
    got = []
    for batch in batches:
        got.extend(pool.submit(batch))
        assert len(pool._pending) <= 2  # one batch a worker
    got.extend(pool.finish())
    assert got == [dedup.band_keys_python(b, 32, 8) for b in batches]


def test_a_worker_that_dies_leaves_its_batches_to_this_process() -> None:
    texts = _texts(300)
    batches = [texts[i:i + 30] for i in range(0, len(texts), 30)]
    pool = sign_pool.SignPool(32, 8, workers=2)
    got = pool.submit(batches[0])
    os.kill(pool._workers[1][0].pid, signal.SIGKILL)  # the next batch goes to this one
    for batch in batches[1:]:
        got.extend(pool.submit(batch))
    got.extend(pool.finish())
    assert got == [dedup.band_keys_python(b, 32, 8) for b in batches]
