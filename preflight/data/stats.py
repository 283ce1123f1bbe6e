"""Summary statistics of a split: counts, token lengths, turns per sample, script mix, labels.

Bounded: lengths are kept as 4-byte integers (for exact percentiles), everything else as small
counters; label counting stops at ``MAX_LABELS`` distinct answers.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_LABELS = 200  # distinct short answers tracked before the data is not classification-like
LABEL_CHARS = 32  # an answer this short can be a label
_SCRIPTS = (
    ("Japanese", re.compile("[\u3040-\u30ff]")),
    ("Korean", re.compile("[\uac00-\ud7af]")),
    ("Chinese", re.compile("[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("Cyrillic", re.compile("[\u0400-\u04ff]")),
    ("Arabic", re.compile("[\u0600-\u06ff]")),
    ("Devanagari", re.compile("[\u0900-\u097f]")),
)
_LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u024f]")
HISTOGRAM_EDGES = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def script_of(text: str) -> str:
    """The dominant script of a text: Latin (ASCII text is, without looking further), Chinese,
    Japanese (any kana), Korean, Cyrillic, Arabic, Devanagari or other."""
    if text.isascii():
        return "Latin"
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPTS}
    if counts["Japanese"] and counts["Japanese"] * 10 >= counts["Chinese"]:
        counts["Japanese"] += counts.pop("Chinese")
    counts["Latin"] = len(_LATIN_LETTER.findall(text))
    name, most = max(counts.items(), key=lambda kv: kv[1])
    return name if most else "other"


@dataclass
class SplitStats:
    records: int = 0
    samples: int = 0  # records readable as samples
    tokens: array = field(default_factory=lambda: array("I"))
    answer_tokens: array = field(default_factory=lambda: array("I"))
    turns: Counter = field(default_factory=Counter)
    scripts: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    long_answers: int = 0  # answers too long to be labels

    def add(self, turns: int, prompt_tokens: int, answer_tokens: int, text: str, answer: str) -> None:
        self.samples += 1
        self.tokens.append(min(prompt_tokens + answer_tokens, 0xFFFFFFFF))
        self.answer_tokens.append(min(answer_tokens, 0xFFFFFFFF))
        self.turns[turns] += 1
        self.scripts[script_of(text)] += 1
        if len(answer) <= LABEL_CHARS and len(self.labels) < MAX_LABELS:
            self.labels[answer.strip().lower()] += 1
        elif len(answer) > LABEL_CHARS:
            self.long_answers += 1

    def classification_like(self) -> bool:
        """Few distinct short answers (the legacy OpenAI prepare_data heuristic: fewer unique
        completions than a third of the samples), at least 20 samples, 95% of answers short."""
        n = self.samples
        return (n >= 20 and 2 <= len(self.labels) < min(MAX_LABELS, n / 3)
                and self.long_answers <= 0.05 * n)

    def percentile(self, q: float, values: array | None = None) -> int:
        values = self.tokens if values is None else values
        if not values:
            return 0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def histogram(self) -> list[tuple[str, int | None, int]]:
        """(label, upper edge or None for the last bucket, samples) per token-length bucket
        (powers of two); empty buckets at either end are dropped."""
        from bisect import bisect_left

        counts = [0] * (len(HISTOGRAM_EDGES) + 1)
        for t in self.tokens:
            counts[bisect_left(HISTOGRAM_EDGES, t)] += 1
        edges: list[int | None] = [*HISTOGRAM_EDGES, None]
        rows = [(f"≤{e:,}" if e is not None else f">{HISTOGRAM_EDGES[-1]:,}", e, c) for e, c in zip(edges, counts)]
        while rows and rows[-1][2] == 0:
            rows.pop()
        while rows and rows[0][2] == 0:
            rows.pop(0)
        return rows

    def to_json(self) -> dict[str, Any]:
        tokens = sorted(self.tokens)

        def pct(q: float) -> int:
            return tokens[min(len(tokens) - 1, int(q * len(tokens)))] if tokens else 0

        out: dict[str, Any] = {
            "records": self.records,
            "samples": self.samples,
            "tokens": {"min": tokens[0] if tokens else 0, "p50": pct(0.5), "p95": pct(0.95),
                       "max": tokens[-1] if tokens else 0,
                       "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
                       "total": sum(tokens)},
            "histogram": [{"bucket": b, "samples": c} for b, _, c in self.histogram()],
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
            "scripts": dict(self.scripts.most_common()),
        }
        if self.classification_like():
            out["labels"] = dict(self.labels.most_common())
        return out
