"""The whole check of a train split (and an eval split): resolve the inputs, scan each split,
confirm near-duplicates and leakage, turn hits into findings, write ``--fix`` output."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.data.dedup import SHINGLE, SHINGLE_CJK, bands_rows, confirm, matches
from preflight.data.formats import Schema, from_dataset_info, matching_entry, schema_from_entry
from preflight.data.readers import FileSet
from preflight.data.rules import Hits, findings, select
from preflight.data.scan import ScanOptions, SplitScan, scan_split, texts_of
from preflight.data.tokens import ESTIMATE, TokenCounter, load_tokenizer
from preflight.errors import InputError
from preflight.findings import Finding


@dataclass
class DataReport:
    train: SplitScan
    eval: SplitScan | None
    findings: list[Finding]
    tokens: TokenCounter
    max_tokens: int | None
    near: dict[str, Any] | None
    fixed: dict[str, Any] | None
    seconds: float


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def _resolve(args: argparse.Namespace) -> tuple[Path | FileSet, Schema | None]:
    train: Path = args.train
    if train.name == "dataset_info.json":
        return from_dataset_info(train, args.dataset)
    if args.dataset:
        raise InputError("--dataset NAME picks an entry of a dataset_info.json; TRAIN is not one", source=str(train))
    if args.format == "auto" and train.is_file():
        found = matching_entry(train)
        if found is not None:
            name, entry = found
            return train, schema_from_entry(entry, f"dataset_info.json entry {name!r}", str(train))
    return train, None


@contextmanager
def _progress(console):  # noqa: ANN001, ANN202 - a rich console or None
    """A progress bar per split on stderr (only on a terminal), as bytes read."""
    if console is None:
        yield lambda path: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        def start(path: Path) -> Callable[[int], None]:
            task = bar.add_task(f"reading {path.name}", total=path.stat().st_size)
            return lambda done: bar.update(task, completed=done)

        yield start


def analyse(args: argparse.Namespace, progress_console=None) -> DataReport:  # noqa: ANN001 - rich console
    started = time.perf_counter()
    rules = select(_csv(args.only), _csv(args.skip))
    chosen = {r.id for r in rules}
    train_path, schema = _resolve(args)
    inputs = train_path.paths if isinstance(train_path, FileSet) else [train_path]
    inputs = inputs + ([args.eval] if args.eval else [])
    for path in inputs:  # before minutes of reading the other split
        if not path.exists():
            raise InputError("no such file", source=str(path))
        if path.is_dir():
            raise InputError("is a folder; give a data file", source=str(path))
    if args.fix is not None:
        from preflight.data.fix import check_output

        check_output(args.fix, inputs)
    counter = load_tokenizer(args.tokenizer) if args.tokenizer else ESTIMATE
    threshold = args.near_dup_threshold
    want_near = not args.no_near_dup and bool(chosen & {"data.near_duplicate", "data.near_leakage"})
    near = bands_rows(threshold) if want_near else None
    hits = Hits(keep=args.show)
    with _progress(progress_console) as start:
        train = scan_split(train_path, str(train_path), ScanOptions(
            args.format, schema, args.max_tokens, counter, near, prompt_keys=args.eval is not None), hits,
            start(train_path) if train_path.is_file() else None)
        evaluation = None
        if args.eval is not None:
            evaluation = scan_split(args.eval, str(args.eval), ScanOptions(
                args.format, schema, args.max_tokens, counter, near, prompt_keys=True), hits,
                start(args.eval) if args.eval.is_file() else None)
    if evaluation is not None:
        for e, t in matches(evaluation.prompts, train.prompts):
            hits.add("data.leakage", evaluation.where(e), f"prompt also in train at {train.where(t)}")
            evaluation.leaked.add(e)
    near_info = None
    if near is not None:
        near_info = _near_duplicates(train, evaluation, threshold, hits)
        near_info.update({"threshold": threshold, "bands": near[0], "rows": near[1],
                          "shingle": f"{SHINGLE} characters ({SHINGLE_CJK} for mostly-CJK text)"})
    if evaluation is None:
        hits.add("data.no_eval", str(train_path), "no --eval split given")
    skipped: dict[str, str] = {}
    if args.max_tokens is None:
        skipped["data.too_long"] = "give --max-tokens N (the trainer's cutoff_len / max_length) to check"
    if evaluation is None:
        skipped["data.leakage"] = skipped["data.near_leakage"] = "no --eval split"
    if near is None:
        skipped.setdefault("data.near_duplicate", "--no-near-dup")
        skipped.setdefault("data.near_leakage", "--no-near-dup")
    ctx = {"format": train.schema.format, "fixed": args.fix is not None,
           "longest": train.stats.percentile(1.0)}
    where = str(train_path) + (f", {args.eval}" if args.eval else "")
    result = findings(rules, hits, where, ctx, skipped)
    fixed = None
    if args.fix is not None:
        from preflight.data.fix import write_fixed

        written, dropped = write_fixed(train_path, args.fix, train.dropped)
        fixed = {"path": str(args.fix), "written": written, "dropped": dropped}
    return DataReport(train, evaluation, result, counter, args.max_tokens, near_info, fixed,
                      time.perf_counter() - started)


def _near_duplicates(train: SplitScan, evaluation: SplitScan | None, threshold: float, hits: Hits) -> dict[str, Any]:
    """Confirm the LSH candidates by exact Jaccard (a second read of the candidates' records)."""
    info: dict[str, Any] = {}
    for split in (train, evaluation):
        if split is None or split.lsh is None:
            continue
        pairs = {(a, b) for a, b in split.lsh.candidates() if a not in split.repeated and b not in split.repeated}
        wanted = {i for pair in pairs for i in pair}
        confirmed = confirm(pairs, texts_of(split.path, split.schema, wanted), None, threshold)
        reported: set[int] = set()
        for later, first, similarity in confirmed:
            if later in reported:
                continue
            reported.add(later)
            hits.add("data.near_duplicate", split.where(later),
                     f"≈ {split.where(first)} (Jaccard {similarity:.2f})")
        info[f"{'train' if split is train else 'eval'}_candidates"] = len(pairs)
        info[f"{'train' if split is train else 'eval'}_pairs"] = len(reported)
    if evaluation is not None and evaluation.lsh is not None and train.lsh is not None:
        pairs = {(e, t) for e, t in evaluation.lsh.candidates_against(train.lsh)
                 if e not in evaluation.leaked and e not in evaluation.repeated and t not in train.repeated}
        confirmed = confirm(pairs, texts_of(evaluation.path, evaluation.schema, {e for e, _ in pairs}),
                            texts_of(train.path, train.schema, {t for _, t in pairs}), threshold)
        seen: set[int] = set()
        for e, t, similarity in confirmed:
            if e in seen:
                continue
            seen.add(e)
            hits.add("data.near_leakage", evaluation.where(e), f"≈ train {train.where(t)} (Jaccard {similarity:.2f})")
        info["leakage_candidates"] = len(pairs)
        info["leakage_pairs"] = len(seen)
    return info
