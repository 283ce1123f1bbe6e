"""One streaming pass over one split: read, detect the format, check each record, count tokens,
keep the hashes duplicate and leakage detection need, and the statistics. Records are dropped as
soon as they are checked; what stays is a few integers per record.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path

from preflight.data.dedup import NO_HASH, LshIndex, normalise, repeats
from preflight.data.formats import DETECT_RECORDS, Schema, detect
from preflight.data.readers import FileSet, read_records
from preflight.data.records import Problem, Sample, check_record
from preflight.data.rules import RULES, Hits
from preflight.data.stats import SplitStats, script_of
from preflight.data.text_quality import quality_problems
from preflight.data.tokens import ESTIMATE, TokenCounter, too_long
from preflight.errors import InputError
from preflight.findings import Status

NEAR_BATCH = 512  # texts signed at once (numpy's work arrays: about 40 MB)
TOKEN_BATCH = 1024  # samples a real tokenizer counts at once
_BREAKS = frozenset(r.id for r in RULES.values() if r.status == Status.FAIL and r.id != "data.leakage")


@dataclass
class ScanOptions:
    format: str = "auto"
    schema: Schema | None = None  # from dataset_info.json
    max_tokens: int | None = None
    counter: TokenCounter | None = None
    near: tuple[int, int] | None = None  # (bands, rows), None: no near-duplicate detection
    prompt_keys: bool = False  # keep prompt hashes (for leakage between splits)


@dataclass
class SplitScan:
    path: Path | FileSet
    schema: Schema
    stats: SplitStats
    dropped: set[int] = field(default_factory=set)  # broken records and exact repeats (--fix)
    lsh: LshIndex | None = None
    prompts: array = field(default_factory=lambda: array("q"))  # index -> prompt hash (for leakage)
    texts: array = field(default_factory=lambda: array("q"))  # index -> normalised-text hash
    repeated: set[int] = field(default_factory=set)  # exact repeats of an earlier record
    leaked: set[int] = field(default_factory=set)  # eval records whose prompt is in train
    lines: array = field(default_factory=lambda: array("q"))  # index -> line (-1: none)

    def where(self, index: int) -> str:
        line = self.lines[index]
        if isinstance(self.path, FileSet):
            file, local = self.path.locate(index)
            return where(str(file), None if line < 0 else line, local)
        return where(self.path.name if self.name is None else self.name, None if line < 0 else line, index)

    name: str | None = None


def where(name: str, line: int | None, index: int) -> str:
    """``file:line``, or ``file[index]`` (0-based) where there are no lines (Parquet)."""
    return f"{name}:{line}" if line is not None else f"{name}[{index}]"



def scan_split(path: Path | FileSet, name: str, options: ScanOptions, hits: Hits,
               progress: Callable[[int], None] | None = None) -> SplitScan:
    records = read_records(path, progress)
    head = list(islice(records, DETECT_RECORDS))
    parsed = [r.value for r in head if r.error is None]
    if not parsed and options.schema is None and options.format == "auto":
        raise InputError(f"none of the first {len(head)} records is valid JSON (first: {head[0].error}); "
                         "is this a data file?", source=name, line=head[0].line)
    schema = options.schema or detect(parsed, options.format, name)
    scan = SplitScan(path, schema, SplitStats())
    stats, dropped = scan.stats, scan.dropped
    text_hashes, prompt_hashes = scan.texts, scan.prompts
    lsh = LshIndex(*options.near) if options.near else None
    scan.lsh = lsh
    batch_ids: list[int] = []
    batch_texts: list[str] = []
    counter = options.counter
    estimating = counter is None or not counter.exact
    per_turn, per_sample = (counter or ESTIMATE).per_turn, (counter or ESTIMATE).per_sample
    if schema.format == "text":  # trained as written (TRL's dataset_text_field, LLaMA-Factory's pt stage)
        per_turn = per_sample = 0
    from preflight.data.tokens import estimate_tokens as count
    # samples awaiting exact counts: index, line, prompt, answer, turns, script, rejected answer
    pending: list[tuple[int, int | None, str, str, int, str, str | None]] = []
    max_tokens = options.max_tokens
    locate = where
    if isinstance(path, FileSet):  # several files: each record is located in its own
        def locate(name: str, line: int | None, index: int) -> str:
            file, local = path.locate(index)
            return where(str(file), line, local)

    def count_pending() -> None:
        """Exact counts for the pending samples, one batch through the tokenizer."""
        rejected = [p[6] for p in pending if p[6] is not None]
        counts = counter.count_batch([p[2] for p in pending] + [p[3] for p in pending] + rejected)
        half = len(pending)
        other = iter(counts[2 * half:])
        for k, (index, line, prompt, answer, turns, script, alt) in enumerate(pending):
            prompt_tokens = counts[k] + per_turn * turns + per_sample
            answer_tokens = counts[half + k]
            longest = max(answer_tokens, next(other)) if alt is not None else answer_tokens
            if max_tokens is not None and prompt_tokens + longest > max_tokens:
                add_hit("data.too_long", locate(name, line, index),
                        too_long(prompt_tokens, answer_tokens, longest, max_tokens))
            stats.add(turns, prompt_tokens, answer_tokens, script, answer)
        pending.clear()

    keep_prompts = options.prompt_keys
    lines = scan.lines
    scan.name = name
    add_hit = hits.add
    index = -1
    for index, line, value, error in chain(head, records):
        lines.append(-1 if line is None else line)
        if error is not None:
            add_hit("data.invalid_json", locate(name, line, index), error)
            dropped.add(index)
            text_hashes.append(NO_HASH)
            if keep_prompts:
                prompt_hashes.append(NO_HASH)
            continue
        problems: list[Problem] = []
        sample: Sample | None = check_record(value, schema, problems)
        if sample is not None:
            prompt, answer = sample.prompt, sample.answer
            full = f"{prompt}\n{answer}" if prompt else answer
            if sample.rest:
                full = f"{full}\n{sample.rest}"
            if sample.rejected is not None:
                full = f"{full}\n{sample.rejected}"
            is_ascii = full.isascii()
            text_problems = quality_problems(full, is_ascii)
            if text_problems:
                problems += text_problems
            norm = normalise(full)
            text_hashes.append(hash(norm) or 1)  # hash("") is 0, which means "no sample"
            if lsh is not None:  # exact repeats are signed too, and left out when pairs are made
                batch_ids.append(index)
                batch_texts.append(norm)
                if len(batch_texts) >= NEAR_BATCH:
                    lsh.add_batch(batch_ids, batch_texts)
                    batch_ids, batch_texts = [], []
            script = "Latin" if is_ascii else script_of(full)
            alt = sample.rejected
            if not estimating:
                pending.append((index, line, prompt, answer, sample.turns, script, alt))
                if len(pending) >= TOKEN_BATCH:
                    count_pending()
            else:
                if is_ascii:  # the estimate's ASCII case, inlined: 4 characters a token
                    prompt_tokens, answer_tokens = (len(prompt) + 3) >> 2, (len(answer) + 3) >> 2
                else:
                    prompt_tokens, answer_tokens = count(prompt), count(answer)
                prompt_tokens += per_turn * sample.turns + per_sample
                longest = answer_tokens if alt is None else max(answer_tokens, count(alt))
                if max_tokens is not None and prompt_tokens + longest > max_tokens:
                    problems.append(("data.too_long", too_long(prompt_tokens, answer_tokens, longest, max_tokens)))
                stats.add(sample.turns, prompt_tokens, answer_tokens, script, answer)
            if keep_prompts:
                prompt_hashes.append(hash(normalise(sample.user)))
        else:
            text_hashes.append(NO_HASH)
            if keep_prompts:
                prompt_hashes.append(NO_HASH)
        if problems:
            at = locate(name, line, index)
            for rule_id, detail in problems:
                add_hit(rule_id, at, detail)
                if rule_id in _BREAKS:
                    dropped.add(index)
    if lsh is not None:
        lsh.add_batch(batch_ids, batch_texts)
    if pending:
        count_pending()
    stats.records = index + 1
    for later, first in repeats(text_hashes):
        add_hit("data.duplicate", scan.where(later), f"same as {scan.where(first)}")
        dropped.add(later)
        scan.repeated.add(later)
    return scan


def texts_of(path: Path | FileSet, schema: Schema, wanted: set[int]) -> Iterator[tuple[int, str]]:
    """The normalised texts of the ``wanted`` records, re-read from the file (the confirmation pass
    of near-duplicate detection)."""
    if not wanted:
        return
    last = max(wanted)
    for raw in read_records(path, wanted=wanted):
        if raw.index > last:
            return
        if raw.index not in wanted or raw.error is not None:
            continue
        sample = check_record(raw.value, schema, [])
        if sample is not None:
            yield raw.index, normalise(sample.full)
