"""`preflight data TRAIN [--eval EVAL]`: check fine-tuning data before a trainer silently drops,
truncates or memorises it. Streams each split once (twice for near-duplicate confirmation), prints
one finding per rule with the first locations, statistics and a token-length histogram.

Import is light: the work is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preflight import arg_types

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "text")
DEFAULT_NEAR_DUP = 0.8


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("train", type=Path, metavar="TRAIN",
                        help="train split: JSONL, JSON array, CSV/TSV, Parquet, or a LLaMA-Factory dataset_info.json")
    parser.add_argument("--eval", type=Path, metavar="EVAL", help="eval split: checked too, and for leakage from train")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="record format (default: detected)")
    parser.add_argument("--dataset", metavar="NAME", help="the dataset_info.json entry to check (TRAIN is that file)")
    parser.add_argument("--max-tokens", type=arg_types.count, metavar="N",
                        help="flag samples over N tokens and say which side is cut (cutoff_len / max_length)")
    parser.add_argument("--tokenizer", type=Path, metavar="PATH",
                        help="local tokenizer.json or model folder for exact counts (else an estimate)")
    parser.add_argument("--near-dup-threshold", type=_threshold, default=DEFAULT_NEAR_DUP, metavar="J",
                        help=f"Jaccard similarity of character n-grams that counts as near-duplicate "
                             f"(default {DEFAULT_NEAR_DUP})")
    parser.add_argument("--no-near-dup", action="store_true", help="skip near-duplicate and near-leakage detection")
    parser.add_argument("--fix", type=Path, metavar="OUT",
                        help="write a cleaned copy of TRAIN to OUT (broken records and repeats dropped)")
    parser.add_argument("--show", type=arg_types.count, default=5, metavar="N", help="locations listed per finding (default 5)")
    parser.add_argument("--only", action="append", metavar="IDS", help="run only these rule ids or globs")
    parser.add_argument("--skip", action="append", metavar="IDS", help="skip these rule ids or globs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--strict", action="store_true", help="warnings fail (exit 1)")
    parser.epilog = ("exit codes: 0 no rule failed (warnings allowed unless --strict), 1 a rule failed, "
                     "2 input error (one line naming the file and line)")


def run(args: argparse.Namespace) -> int:
    from preflight.data.analysis import analyse
    from preflight.data.render import render_json, render_terminal
    from preflight.findings import exit_code
    from preflight.report.console import make_console

    console = make_console()
    progress_console = make_console(stderr=True)
    report = analyse(args, progress_console if progress_console.is_terminal and not args.json else None)
    code = exit_code(report.findings, strict=bool(args.strict))
    if args.json:
        print(render_json(report, code))
    else:
        render_terminal(console, report, code, bool(args.strict))
    return code
