"""One benchmark rank: all-reduce sweep, pairwise straggler search, memory benchmark.

Runs on a node with the node's own Python and torch (Python 3.8+; nothing else is imported at
module level, so the controller can import the pure helpers below without torch). The launcher
starts it as ``python -c <this source> preflight-bench-rank <config JSON>`` with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. It prints one JSON object
per line on stdout:

- ``{"event": "stage", "stage": S}`` when it enters stage S: import, rendezvous, first, sweep,
  pairwise, memory, done. The controller times each stage against its own deadline, so a hang
  is reported with the stage it happened in.
- ``{"event": "info", ...}``, ``{"event": "size", ...}``, ``{"event": "pair", ...}``,
  ``{"event": "memory", ...}``: measurements.
- ``{"event": "error", "stage": S, "message": M}`` and exit 1 on any exception.

Timing follows nccl-tests: GPU time with CUDA events around ``iters`` back-to-back collectives
after warm-up, time per op = elapsed / iters; algbw = bytes / time, busbw = algbw * 2(n-1)/n for
all-reduce. Correctness: a separate all-reduce of ``rank + 1`` everywhere must give
``n(n+1)/2`` in every element.
"""

import contextlib
import json
import math
import os
import sys
import time

MiB = 1 << 20


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def busbw_factor(world_size):
    """nccl-tests' bus bandwidth factor for all-reduce, 2(n-1)/n (0 for a single rank)."""
    return 2.0 * (world_size - 1) / world_size if world_size > 0 else 0.0


def iterations(seconds_per_op, budget_s, least, most):
    """How many timed iterations fit the per-size time budget, within [least, most]."""
    if seconds_per_op <= 0:
        return most
    return max(least, min(most, int(math.ceil(budget_s / seconds_per_op))))


# --- the pairwise straggler search: pure, so the controller reaches the same conclusion -----------


def first_rounds(n_nodes):
    """Every node paired once: (0,1), (2,3), ...; an odd last node is paired with node 0 in a
    second round. Each round's pairs are disjoint, so a round runs concurrently."""
    rounds = [[(i, i + 1) for i in range(0, n_nodes - 1, 2)]]
    if n_nodes % 2 == 1 and n_nodes >= 3:
        rounds.append([(n_nodes - 1, 0)])
    return [r for r in rounds if r]


def slow_pairs(measured, fraction):
    """Pairs whose bandwidth is below ``fraction`` of the best pair's."""
    if not measured:
        return []
    best = max(measured.values())
    return sorted(p for p, bw in measured.items() if bw < fraction * best)


def bisect_rounds(measured, fraction, n_nodes):
    """For each node of a slow pair that was not seen in a good pair: pair it with a node that
    was, so that a slow node is told apart from a slow link. Rounds of disjoint pairs."""
    slow = set(slow_pairs(measured, fraction))
    good_nodes = sorted({x for p in measured if p not in slow for x in p})
    if not good_nodes:
        return []
    wanted = []
    for a, b in sorted(slow):
        for x in (a, b):
            if x in good_nodes:
                continue
            partner = next(
                (g for g in good_nodes if g not in (a, b) and (x, g) not in measured and (g, x) not in measured),
                None,
            )
            pair = (x, partner) if partner is not None else None
            if pair and pair not in wanted and (pair[1], pair[0]) not in wanted:
                wanted.append(pair)
    rounds = []
    for pair in wanted:
        for r in rounds:
            if not any(set(pair) & set(q) for q in r):
                r.append(pair)
                break
        else:
            rounds.append([pair])
    return rounds


def conclude(measured, fraction):
    """(stragglers, bad_links) from the pair bandwidths: a node is a straggler when every pair it
    was in is slow and it was tested against at least one node that is fine elsewhere; a link is
    bad when its pair is slow but both nodes are fine with others."""
    slow = set(slow_pairs(measured, fraction))
    nodes = sorted({x for p in measured for x in p})
    fine = {x for p in measured if p not in slow for x in p}
    stragglers = []
    for x in nodes:
        mine = [p for p in measured if x in p]
        partners_fine = any((p[0] if p[1] == x else p[1]) in fine for p in mine)
        if mine and all(p in slow for p in mine) and partners_fine:
            stragglers.append(x)
    bad_links = sorted(p for p in slow if p[0] in fine and p[1] in fine)
    return stragglers, bad_links


# --- the benchmark itself: needs torch ------------------------------------------------------------


class Bench:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rank = int(os.environ["RANK"])
        self.world = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.backend = cfg["backend"]
        self.stage = "import"

    def enter(self, stage):
        self.stage = stage
        emit("stage", stage=stage)

    def setup(self):
        import datetime

        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.gpu = self.backend == "nccl"
        if self.gpu:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        self.enter("rendezvous")
        dist.init_process_group(
            self.backend, timeout=datetime.timedelta(seconds=float(self.cfg["collective_timeout"]))
        )
        self.enter("first")
        one = torch.ones(1, device=self.device)
        dist.all_reduce(one)
        if self.gpu:
            torch.cuda.synchronize()
        info = {"torch": torch.__version__, "host": os.uname()[1], "first_sum": float(one.item())}
        if self.gpu:
            info["device"] = torch.cuda.get_device_name(self.local_rank)
            with contextlib.suppress(Exception):  # a build without NCCL's version API
                info["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
        emit("info", **info)

    def _timed(self, op, iters, group=None):
        """Seconds per op: CUDA events on GPUs, the wall clock on CPU (gloo is synchronous)."""
        torch, dist = self.torch, self.dist
        dist.barrier(group=group)
        if self.gpu:
            return _event_seconds(torch, op, iters)
        t0 = time.perf_counter()
        for _ in range(iters):
            op()
        return (time.perf_counter() - t0) / iters

    def _agree_max(self, value, group=None):
        t = self.torch.tensor([float(value)], dtype=self.torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX, group=group)
        return float(t.item())

    def _iters_for(self, op, group=None):
        estimate = self._agree_max(self._timed(op, 2, group), group)
        return iterations(estimate, self.cfg["seconds_per_size"], self.cfg["min_iters"], self.cfg["max_iters"])

    def sweep(self):
        torch, dist = self.torch, self.dist
        self.enter("sweep")
        n = self.world
        expected_sum = n * (n + 1) / 2.0
        largest = None
        for size in self.cfg["sizes"]:
            count = max(1, size // 4)
            buf = torch.zeros(count, dtype=torch.float32, device=self.device)  # sums stay 0
            iters = self._iters_for(lambda: dist.all_reduce(buf))
            seconds = self._timed(lambda: dist.all_reduce(buf), iters)
            check = torch.full((count,), float(self.rank + 1), dtype=torch.float32, device=self.device)
            dist.all_reduce(check)
            wrong = int((check != expected_sum).sum().item())
            buf = check = None  # free before the next size
            emit("size", bytes=count * 4, count=count, iters=iters, seconds=seconds, wrong=wrong)
            largest = (count * 4, seconds)
        return largest

    def pairwise(self, largest):
        """Run the pair rounds when asked, or when the whole-cluster busbw is low ("auto")."""
        torch, dist = self.torch, self.dist
        mode, nodes = self.cfg["pairwise"], self.cfg["node_ranks"]
        if mode == "never" or len(nodes) < 3 or largest is None:
            return
        size, seconds = largest
        avg = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.all_reduce(avg)
        busbw = size / (float(avg.item()) / self.world) * busbw_factor(self.world)
        expected = self.cfg.get("expected_busbw")
        low = expected is not None and busbw < self.cfg["expected_fraction"] * expected
        if mode == "auto" and not low:
            return
        self.enter("pairwise")
        size = min(size, self.cfg["pair_bytes"])
        my_node = next(i for i, ranks in enumerate(nodes) if self.rank in ranks)
        measured = {}
        for pairs in first_rounds(len(nodes)):
            measured.update(self._pair_round(pairs, size, my_node))
        for pairs in bisect_rounds(measured, self.cfg["straggler_fraction"], len(nodes)):
            measured.update(self._pair_round(pairs, size, my_node))

    def _pair_round(self, pairs, size, my_node):
        """All ranks create every pair's group (new_group is collective); each pair's ranks time
        an all-reduce at ``size``; the times are shared with everyone through a MAX all-reduce."""
        torch, dist = self.torch, self.dist
        nodes = self.cfg["node_ranks"]
        groups = [dist.new_group(sorted(nodes[a] + nodes[b])) for a, b in pairs]
        times = torch.zeros(len(pairs), dtype=torch.float64, device=self.device)
        for i, (a, b) in enumerate(pairs):
            if my_node in (a, b):
                group = groups[i]
                count = max(1, size // 4)
                buf = torch.zeros(count, dtype=torch.float32, device=self.device)
                iters = self._iters_for(lambda: dist.all_reduce(buf, group=group), group)
                times[i] = self._timed(lambda: dist.all_reduce(buf, group=group), iters, group)
                buf = None
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        out = {}
        for i, (a, b) in enumerate(pairs):
            ranks = len(nodes[a]) + len(nodes[b])
            seconds = float(times[i].item())
            bw = (count_bytes(size) / seconds * busbw_factor(ranks)) if seconds > 0 else 0.0
            out[(a, b)] = bw
            if self.rank == 0:
                emit("pair", nodes=[a, b], bytes=count_bytes(size), seconds=seconds, ranks=ranks)
        for group in groups:
            with contextlib.suppress(Exception):  # older torch cannot destroy a subgroup
                dist.destroy_process_group(group)
        return out

    def memory(self):
        if not self.cfg["memory"]:
            return
        self.enter("memory")
        local = self.cfg["local_world"]
        if self.gpu:
            for turn in range(local):  # one GPU at a time: concurrent copies share host links
                if turn == self.local_rank:
                    emit("memory", **gpu_memory(self.torch, self.local_rank, self.cfg))
                self.dist.barrier()
        elif self.local_rank == 0:
            emit("memory", **host_memory(self.torch, self.cfg))

    def run(self):
        self.enter("import")
        self.setup()
        largest = self.sweep()
        self.pairwise(largest)
        self.memory()
        self.dist.barrier()
        self.enter("done")


def count_bytes(size):
    return max(1, size // 4) * 4


def gpu_memory(torch, index, cfg):
    """Device-to-device copy bandwidth (read + write bytes, as STREAM's copy counts them) and
    pinned host<->device bandwidth; then allocate chunks up to a fraction of free memory and read
    each back (a pattern written as int32 must sum to count * pattern).

    The copies come first, on fresh buffers: on a real H200 VM, host-to-device copies into memory
    allocated right after the allocation test had been freed ran at half speed (27.6 against
    55 GB/s), every time, while the same copies before it, or into later buffers, did not."""
    out = {"device": "gpu%d" % index, "name": torch.cuda.get_device_name(index)}
    free, total = torch.cuda.mem_get_info(index)
    out.update(free_bytes=int(free), total_bytes=int(total))
    size = min(cfg["copy_bytes"], max(MiB, int(free) // 8))
    src = torch.empty(size, dtype=torch.uint8, device="cuda:%d" % index).fill_(1)
    dst = torch.empty_like(src)
    out["copy_bytes"] = size
    out["d2d_bps"] = 2 * size / _cuda_seconds(torch, lambda: dst.copy_(src), cfg["copy_iters"])
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    out["h2d_bps"] = size / _cuda_seconds(torch, lambda: dst.copy_(host, non_blocking=True), cfg["copy_iters"])
    out["d2h_bps"] = size / _cuda_seconds(torch, lambda: host.copy_(dst, non_blocking=True), cfg["copy_iters"])
    src = dst = host = None
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info(index)[0]
    target = int(free * cfg["memory_fraction"])
    chunk_bytes = min(1 << 30, max(4 * MiB, target))
    chunks, usable, mismatches = [], 0, 0
    pattern = 0x5A5A5A5A
    try:
        while usable + chunk_bytes <= target:
            chunk = torch.empty(chunk_bytes // 4, dtype=torch.int32, device="cuda:%d" % index)
            chunk.fill_(pattern)
            if int(chunk.sum(dtype=torch.int64).item()) != (chunk_bytes // 4) * pattern:
                mismatches += 1
            chunks.append(chunk)
            usable += chunk_bytes
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
        out["allocation_error"] = str(exc).splitlines()[0][:300]
    out.update(target_bytes=target, usable_bytes=usable, mismatched_chunks=mismatches)
    chunks = None  # free before the next GPU's turn
    torch.cuda.empty_cache()
    return out


def _event_seconds(torch, op, iters):
    """Seconds per op of ``iters`` back-to-back ops, timed on the GPU with CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        op()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0 / iters


def _cuda_seconds(torch, op, iters, trials=3):
    """Seconds per op: the best of ``trials`` timed runs of ``iters`` ops, after warm-up."""
    for _ in range(3):
        op()
    torch.cuda.synchronize()
    return min(_event_seconds(torch, op, iters) for _ in range(trials))


def host_memory(torch, cfg):
    """Host memory copy bandwidth (read + write bytes) on a node without GPUs."""
    size = cfg["copy_bytes"]
    src = torch.ones(size, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)
    iters = cfg["copy_iters"]
    t0 = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    seconds = (time.perf_counter() - t0) / iters
    return {"device": "host", "name": None, "copy_bytes": size, "host_bps": 2 * size / seconds}


def main(argv):
    cfg = json.loads(argv[-1])
    bench = Bench(cfg)
    try:
        bench.run()
    except BaseException as exc:  # noqa: BLE001 - report the stage, then leave without cleanup hangs
        message = "%s: %s" % (type(exc).__name__, exc)
        emit("error", stage=bench.stage, message=" | ".join(message.splitlines())[:2000])
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # destroy_process_group() can hang when a peer is gone; the process group ends with us


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "preflight-bench-rank":
    main(sys.argv)
