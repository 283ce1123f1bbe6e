"""Near-duplicate signatures signed in worker processes when numpy is not installed.

Pure-Python signing costs about 0.3 ms a text, 30 s for 100,000 texts on one core, while reading
and checking the records takes a tenth of that: the batches go to one worker per CPU, in turn,
and come back in the order they were sent. The signatures do not depend on which process made
them (CRC-32 and tuple hashes, no per-process string hash seed), so the result is the same as
signing here, and the tests compare the two.

Bounded: one batch per worker is in flight (the texts of a batch are held until its keys are
back, so a batch lost with a worker is signed here instead); the scan waits for the oldest when
the workers fall behind. The workers are started fresh ("spawn": safe beside the
progress bar's thread), are daemons (they never outlive this process), and ignore Ctrl-C, which
the command handles. (Not ``ProcessPoolExecutor``: when one of its workers dies it can start a
replacement that nothing stops, and the interpreter then waits for it at exit.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import weakref
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

POOL_FROM = 4096  # texts seen before workers pay for their start (~0.2 s each)
MAX_WORKERS = 8

KeyRows = list[tuple[int, ...]]


def workers_available() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _sign(texts: list[str], bands: int, rows: int) -> KeyRows:
    from preflight.data.dedup import band_keys_python

    return band_keys_python(texts, bands, rows)


def _work(conn: Connection, bands: int, rows: int) -> None:
    """A worker: batches of texts in, key rows out, until None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):
            return
        if texts is None:
            return
        conn.send(_sign(texts, bands, rows))


class SignPool:
    """Batches of texts in, their band keys out, in order."""

    def __init__(self, bands: int, rows: int, workers: int) -> None:
        self.bands, self.rows = bands, rows
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[Any, Connection] | None] = []
        for _ in range(workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=_work, args=(theirs, bands, rows), daemon=True)
            process.start()
            theirs.close()
            self._workers.append((process, mine))
        self._next = 0
        # (worker index or None to sign here, the texts)
        self._pending: deque[tuple[int | None, list[str]]] = deque()
        # a scan that stops early (a broken file, Ctrl-C) drops its index: the workers go with it
        self._stop_workers = weakref.finalize(self, _stop, list(self._workers))

    def submit(self, texts: list[str]) -> list[KeyRows]:
        """Send a batch; the key rows of the batches finished so far, oldest first. Each worker
        holds one batch at a time: the next goes to it once its last is collected (two in one
        pipe could deadlock, each side blocked writing to the other), so the scan waits for the
        oldest when the workers fall behind."""
        done: list[KeyRows] = []
        if len(self._pending) >= len(self._workers):  # the next worker's last batch is the oldest
            done.append(self._collect())
        index: int | None = self._next
        self._next = (self._next + 1) % len(self._workers)
        worker = self._workers[index]
        if worker is None:
            index = None
        else:
            try:
                worker[1].send(texts)
            except (OSError, ValueError):  # the worker is gone
                self._lose(index)
                index = None
        self._pending.append((index, texts))
        while self._pending and self._ready(self._pending[0][0]):
            done.append(self._collect())
        return done

    def finish(self) -> list[KeyRows]:
        """The key rows of every batch still in flight, in order; the workers are stopped."""
        done = [self._collect() for _ in range(len(self._pending))]
        self.close()
        return done

    def close(self) -> None:
        self._stop_workers()  # (once: the finalizer is spent)
        self._workers = [None] * len(self._workers)
        self._pending.clear()

    def _ready(self, index: int | None) -> bool:
        worker = None if index is None else self._workers[index]
        return worker is None or worker[1].poll()

    def _collect(self) -> KeyRows:
        index, texts = self._pending.popleft()
        worker = None if index is None else self._workers[index]
        if worker is not None:
            try:
                return worker[1].recv()
            except (EOFError, OSError):  # it died (killed, out of memory): signed here instead
                self._lose(index)
        return _sign(texts, self.bands, self.rows)

    def _lose(self, index: int) -> None:
        worker = self._workers[index]
        if worker is not None:
            _stop([worker])
            self._workers[index] = None


def _stop(workers: list) -> None:
    """Ask each worker to stop, then make sure it has."""
    for worker in workers:
        if worker is None:
            continue
        conn = worker[1]
        with contextlib.suppress(OSError, ValueError):  # already gone
            conn.send(None)
        conn.close()
    for worker in workers:
        if worker is None:
            continue
        process = worker[0]
        process.join(timeout=1)
        if process.is_alive():
            process.terminate()
            process.join()
