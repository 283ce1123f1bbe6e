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
_LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u024f]")
_KANA = re.compile("[\u3040-\u30ff]")
_HANGUL = re.compile("[\uac00-\ud7af]")
_HAN = re.compile("[\u4e00-\u9fff\u3400-\u4dbf]")
_TWO_BYTE = (("Cyrillic", re.compile("[\u0400-\u04ff]")), ("Greek", re.compile("[\u0370-\u03ff]")),
             ("Arabic", re.compile("[\u0600-\u06ff]")), ("Hebrew", re.compile("[\u0590-\u05ff]")))
HISTOGRAM_EDGES = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def script_of(text: str) -> str:
    """The dominant script of a text: Latin (ASCII text is, without looking further), Chinese,
    Japanese (any kana), Korean, Cyrillic, Greek, Arabic, Hebrew or other. Decided from the UTF-8
    length first (3-byte characters against 2-byte ones against ASCII), then one or two searches."""
    if text.isascii():
        return "Latin"
    n = len(text)
    ascii_chars = len(text.encode("ascii", errors="ignore"))
    others = n - ascii_chars
    wide = max(0, len(text.encode("utf-8", errors="surrogatepass")) - n - others)
    two_byte = others - wide
    if wide * 3 >= ascii_chars and wide >= two_byte:  # a CJK character carries about a word
        if _KANA.search(text):
            return "Japanese"
        if _HANGUL.search(text) and not _HAN.search(text):
            return "Korean"
        return "Chinese" if _HAN.search(text) else "other"
    if two_byte * 2 >= ascii_chars:
        for name, pattern in _TWO_BYTE:
            if pattern.search(text):
                return name
        return "Latin" if _LATIN_LETTER.search(text) else "other"
    return "Latin"


@dataclass
class SplitStats:
    records: int = 0
    samples: int = 0  # records readable as samples
    tokens: array = field(default_factory=lambda: array("I"))
    turns: Counter = field(default_factory=Counter)
    scripts: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    long_answers: int = 0  # answers too long to be labels
    _sorted: array | None = None

    def add(self, turns: int, prompt_tokens: int, answer_tokens: int, script: str, answer: str) -> None:
        self.samples += 1
        total = prompt_tokens + answer_tokens
        self.tokens.append(total if total < 0xFFFFFFFF else 0xFFFFFFFF)
        self.turns[turns] += 1
        self.scripts[script] += 1
        if len(answer) > LABEL_CHARS:
            self.long_answers += 1
        elif len(self.labels) < MAX_LABELS:
            self.labels[answer.strip().lower()] += 1

    def classification_like(self) -> bool:
        """Few distinct short answers (the legacy OpenAI prepare_data heuristic: fewer unique
        completions than a third of the samples), at least 20 samples, 95% of answers short."""
        n = self.samples
        return (n >= 20 and 2 <= len(self.labels) < min(MAX_LABELS, n / 3)
                and self.long_answers <= 0.05 * n)

    def percentile(self, q: float) -> int:
        """The q-quantile of tokens per sample (sorted once, when the split is read)."""
        if self._sorted is None or len(self._sorted) != len(self.tokens):
            self._sorted = array("I", sorted(self.tokens))
        ordered = self._sorted
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0

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
        tokens = self.tokens
        pct = self.percentile
        out: dict[str, Any] = {
            "records": self.records,
            "samples": self.samples,
            "tokens": {"min": pct(0.0), "p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0),
                       "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
                       "total": sum(tokens)},
            "histogram": [{"bucket": b, "samples": c} for b, _, c in self.histogram()],
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
            "scripts": dict(self.scripts.most_common()),
        }
        if self.classification_like():
            out["labels"] = dict(self.labels.most_common())
        return out
