"""How fast `preflight data` reads a fine-tuning set, against a plain `json.loads` loop over the
same file in the same process.

Writes a realistic JSONL file (default 200,000 alpaca records, 70% English and 30% Chinese, with
answers from one sentence to a few paragraphs, 1% exact repeats and 1% lightly edited copies) to
a temporary folder, then measures in one process:

- a plain ``for line in f: json.loads(line)`` loop (the floor: parsing alone);
- preflight's record-level checks (parse, keys and types, empty fields, turn order, encoding,
  control characters, HTML, repetition, token estimate, exact duplicates, statistics);
- near-duplicate detection over the first 100,000 records: MinHash signatures, LSH candidates
  and exact-Jaccard confirmation (which re-reads the candidates' records);
- the whole command, ``preflight data FILE --json``, as a fresh process.

Targets (issue 7, 2-core machine): record-level >= 50,000 records/s; near-duplicates over
100,000 records < 30 s. Figures are medians of ``--runs`` runs.

    python benchmarks/data_throughput.py [--records 200000] [--near 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import wall  # noqa: E402 - benchmarks/timing.py

_SYLLABLES = ("ka ti ro me su na le vo pi da ge ly mo ra te si no ve lu ba co de fi ga he ji ko li "
              "ma ne po qu re sa to un vi wa xe yo ze").split()
_COMMON_ZH = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
              "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些"
              "然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公"
              "无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将"
              "组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金")


def _vocabulary(rng: random.Random, size: int = 8000) -> list[str]:
    """Pseudo-words of 1-4 syllables; drawn with a Zipf-like weight, as words are in real text."""
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(size)]


def _zipf_weights(size: int) -> list[float]:
    """Cumulative 1/rank weights, for ``random.choices(cum_weights=...)``."""
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(size)))


def _en(rng: random.Random, words: int, vocab: list[str], weights: list[float]) -> str:
    text = " ".join(rng.choices(vocab, cum_weights=weights, k=words))
    return text[0].upper() + text[1:] + "."


def _zh(rng: random.Random, chars: int, weights: list[float]) -> str:
    return "".join(rng.choices(_COMMON_ZH, cum_weights=weights, k=chars)) + "。"


def write_dataset(path: Path, records: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    en_w, zh_w = _zipf_weights(len(vocab)), _zipf_weights(len(_COMMON_ZH))
    kept: list[dict] = []
    with path.open("w", encoding="utf-8") as f:
        for _ in range(records):
            roll = rng.random()
            if kept and roll < 0.01:
                record = rng.choice(kept)  # an exact repeat
            elif kept and roll < 0.02:
                base = rng.choice(kept)  # a lightly edited copy
                record = dict(base, output=base["output"].replace("。", "！", 1).replace(".", "!", 1) + " ok")
            elif rng.random() < 0.7:
                record = {"instruction": _en(rng, rng.randint(6, 30), vocab, en_w),
                          "input": _en(rng, rng.randint(3, 40), vocab, en_w) if rng.random() < 0.4 else "",
                          "output": " ".join(_en(rng, rng.randint(8, 25), vocab, en_w) for _ in range(rng.randint(1, 6)))}
            else:
                record = {"instruction": _zh(rng, rng.randint(8, 40), zh_w), "input": "",
                          "output": "".join(_zh(rng, rng.randint(15, 40), zh_w) for _ in range(rng.randint(1, 6)))}
            if len(kept) < 5000 and rng.random() < 0.1:
                kept.append(record)
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def plain_loop(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - start


def record_level(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine the second shows what
    the code costs when other work takes the cores."""
    from preflight.data.rules import Hits
    from preflight.data.scan import ScanOptions, scan_split

    start, cpu = time.perf_counter(), time.process_time()
    scan_split(path, path.name, ScanOptions(), Hits())
    return time.perf_counter() - start, time.process_time() - cpu


def near_duplicates(path: Path, threshold: float = 0.8) -> tuple[float, int, int]:
    """Signatures, LSH candidates and exact confirmation (the second read), alone."""
    from preflight.data.dedup import LshIndex, bands_rows, confirm, normalise
    from preflight.data.formats import Schema
    from preflight.data.readers import read_records
    from preflight.data.records import check_record
    from preflight.data.scan import texts_of

    schema = Schema("alpaca", "benchmark")
    texts = []
    for raw in read_records(path):
        sample = check_record(raw.value, schema, [])
        texts.append(normalise(sample.full))
    start = time.perf_counter()
    lsh = LshIndex(*bands_rows(threshold))
    seen: set[int] = set()
    ids, batch = [], []
    for i, text in enumerate(texts):
        key = hash(text)
        if key in seen:
            continue  # exact repeats are the exact check's
        seen.add(key)
        ids.append(i)
        batch.append(text)
        if len(batch) == 2048:
            lsh.add_batch(ids, batch)
            ids, batch = [], []
    lsh.add_batch(ids, batch)
    pairs = lsh.candidates()
    confirmed = confirm(pairs, texts_of(path, schema, {i for p in pairs for i in p}), None, threshold)
    return time.perf_counter() - start, len(pairs), len({later for later, _, _ in confirmed})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--near", type=int, default=100_000, help="records for the near-duplicate figure")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import numpy  # noqa: F401
        near_path = "numpy"
    except ImportError:
        near_path = "pure Python"
    try:
        import orjson  # noqa: F401
        parser_name = "orjson"
    except ImportError:
        parser_name = "json"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        write_dataset(path, args.records)
        near_file = Path(tmp) / "near.jsonl"
        with path.open("rb") as src, near_file.open("wb") as dst:
            for i, line in enumerate(src):
                if i >= args.near:
                    break
                dst.write(line)
        size = path.stat().st_size / 1e6
        plain, ours, ours_cpu, near, cli = [], [], [], [], []
        for _ in range(args.runs):
            plain.append(plain_loop(path))
            wall_s, cpu_s = record_level(path)
            ours.append(wall_s)
            ours_cpu.append(cpu_s)
            seconds, candidates, pairs = near_duplicates(near_file)
            near.append(seconds)
        cli = wall([sys.executable, "-m", "preflight", "data", str(path), "--json"], max(1, args.runs // 2),
                   cwd=str(Path(__file__).resolve().parents[1]))
    load = os.getloadavg()[0]  # over the last minute, read at the end
    n = args.records
    p, o, m, c = (statistics.median(x) for x in (plain, ours, near, cli))
    print(f"{n:,} records, {size:.0f} MB JSONL; median of {args.runs} runs; load average {load:.2f}; "
          f"preflight parses with {parser_name}, signs with {near_path}")
    print(f"{'plain json.loads loop':40} {p:6.2f} s  {n / p:9,.0f} records/s")
    oc = statistics.median(ours_cpu)
    print(f"{'preflight record-level checks':40} {o:6.2f} s  {n / o:9,.0f} records/s   ({o / p:.2f}x the plain loop)")
    print(f"{'  the same, CPU time of the process':40} {oc:6.2f} s  {n / oc:9,.0f} records/s")
    print(f"{'near-duplicates over ' + format(args.near, ',') + ' records':40} {m:6.2f} s  "
          f"({candidates:,} candidates, {pairs:,} confirmed)")
    print(f"{'preflight data FILE --json (process)':40} {c:6.2f} s  {n / c:9,.0f} records/s (everything, near-dups too)")
    print(f"\nrecord-level {n / o:,.0f} records/s (target >= 50,000): {'MET' if n / o >= 50_000 else 'MISSED'}")
    print(f"near-duplicates {m:.1f} s over {args.near:,} records (target < 30 s): {'MET' if m < 30 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
