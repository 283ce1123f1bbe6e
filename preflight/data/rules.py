"""The rules of ``preflight data``: id, title, status and fix, with what each catches as its
docstring. The scan records hits per rule id; :func:`findings` turns them into one finding per
rule, however many records it hit (the first locations and a count).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from preflight.errors import InputError
from preflight.findings import Finding, Status

GROUP = "Data"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    status: Status  # the status of a hit
    fix: Callable[[dict], str]  # remediation, given the run's context
    doc: str


RULES: dict[str, Rule] = {}


def rule(rule_id: str, title: str, status: Status) -> Callable[[Callable[[dict], str]], Callable[[dict], str]]:
    def wrap(func: Callable[[dict], str]) -> Callable[[dict], str]:
        RULES[rule_id] = Rule(rule_id, title, status, func, " ".join((func.__doc__ or "").split()))
        return func

    return wrap


FAIL, WARN = Status.FAIL, Status.WARN
SPLIT_LEVEL = frozenset({"data.no_eval"})  # rules about a split, not about records


def _fix_or_drop(ctx: dict) -> str:
    return "" if ctx.get("fixed") else " (`--fix OUT` writes a copy without these records)"


# --------------------------------------------------------------------------------------------
# reading and structure


@rule("data.invalid_json", "Every line is JSON", FAIL)
def invalid_json(ctx: dict) -> str:
    """A line (JSONL) or array item that does not parse. HF ``datasets`` aborts the whole load
    ("JSON parse error"); OpenAI requires one complete JSON object per line."""
    return "repair or delete these lines" + _fix_or_drop(ctx)


@rule("data.wrong_type", "Fields have the right types", FAIL)
def wrong_type(ctx: dict) -> str:
    """A record that is not an object, or a field of the wrong type (an answer that is a number,
    ``messages`` that is not a list, a ``history`` that is not ``[prompt, response]`` pairs).
    pyarrow-backed loaders fail on the first type change ("Column changed from string to
    array"); LLaMA-Factory turns a non-string response into an unsupervised example."""
    return "make these fields strings (or lists of turns)" + _fix_or_drop(ctx)


@rule("data.missing_key", "Required keys present", FAIL)
def missing_key(ctx: dict) -> str:
    """A required key missing: alpaca ``instruction``/``output``, chat ``messages`` and each
    turn's role and content. Loaders fill a missing column with null and the sample is dropped
    or trains on nothing (LLaMA-Factory converter; OpenAI ``message_missing_key``)."""
    return f"add the key or fix the key names (format: {ctx.get('format', '?')})" + _fix_or_drop(ctx)


@rule("data.null_value", "Required values not null", FAIL)
def null_value(ctx: dict) -> str:
    """A required field that is ``null``: LLaMA-Factory drops the example with only a log line
    ("Dropped invalid example"), others train on an empty string."""
    return "fill in the value or drop the record" + _fix_or_drop(ctx)


@rule("data.unexpected_key", "No unexpected keys", WARN)
def unexpected_key(ctx: dict) -> str:
    """Keys the format does not read (beyond common metadata such as ``id``, ``source``): often
    a misspelt field (``ouput``) whose text is silently ignored, so the sample trains on less than
    intended. OpenAI rejects unknown message keys (``message_unrecognized_key``)."""
    return "rename misspelt keys; drop the others, or map them in dataset_info.json"


@rule("data.empty_prompt", "Prompts not empty", WARN)
def empty_prompt(ctx: dict) -> str:
    """An empty or whitespace-only instruction (and input), or user turn: the model learns to
    answer nothing in particular."""
    return "fill in the prompt or drop the record"


@rule("data.empty_answer", "Answers not empty", FAIL)
def empty_answer(ctx: dict) -> str:
    """An empty or whitespace-only answer (alpaca ``output``, an assistant turn, a ``text``).
    LLaMA-Factory keeps it and trains on EOS alone (teaching the model to stop at once); Axolotl
    drops it ("Dropped N samples with no trainable tokens"); OpenAI rejects it
    (``missing_content``)."""
    return "write the answer or drop the record" + _fix_or_drop(ctx)


@rule("data.unknown_role", "Known chat roles", FAIL)
def unknown_role(ctx: dict) -> str:
    """A turn whose role is none of the format's (``user/assistant/system/tool`` for messages;
    ``human/gpt/system/observation/function_call`` for ShareGPT, or the tags of a
    dataset_info.json entry). LLaMA-Factory logs "Invalid role tag" and empties the example;
    OpenAI: ``unrecognized_role``."""
    return ("rename the role, or map it in the dataset_info.json entry: for OpenAI role names in a "
            'ShareGPT file, "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "user", '
            '"assistant_tag": "assistant"}' + _fix_or_drop(ctx))


@rule("data.turn_order", "Chat turns alternate", FAIL)
def turn_order(ctx: dict) -> str:
    """Turns in an impossible order: two user or two assistant turns in a row, a conversation
    starting with the assistant, a system turn in the middle. LLaMA-Factory requires human
    (or observation) turns at odd positions and gpt (or function) at even ones, and otherwise
    skips the example silently ("Skipping this abnormal example")."""
    return "merge consecutive turns of one side, or reorder them" + _fix_or_drop(ctx)


@rule("data.no_assistant_turn", "An assistant turn in every conversation", FAIL)
def no_assistant_turn(ctx: dict) -> str:
    """A conversation without an assistant turn has nothing to learn (OpenAI:
    ``example_missing_assistant_message``; TRL with ``assistant_only_loss`` raises)."""
    return "add the assistant's answer or drop the record" + _fix_or_drop(ctx)


@rule("data.last_turn_not_assistant", "Conversations end with the assistant", FAIL)
def last_turn_not_assistant(ctx: dict) -> str:
    """The last turn is the user's (or a tool's): LLaMA-Factory counts the turns, finds an odd
    number and skips the example ("Invalid message count"); elsewhere the trailing turn is not
    learned."""
    return "drop the trailing turn or add the answer" + _fix_or_drop(ctx)


# --------------------------------------------------------------------------------------------
# text


@rule("data.mojibake", "No mojibake", WARN)
def mojibake(ctx: dict) -> str:
    """Text decoded with the wrong codec: UTF-8 read as cp1252 or latin-1 (``donâ€™t``,
    ``Ã©``, ``ä¸­``) or as GBK (``浣犲ソ`` for 你好, confirmed by a GBK→UTF-8 round trip). The
    model learns the garbage. Patterns from ftfy's documentation and reference notes §1.9."""
    return "re-read the source with the right encoding; ftfy.fix_text repairs the cp1252/latin-1 cases"


@rule("data.replacement_char", "No lost characters", WARN)
def replacement_char(ctx: dict) -> str:
    """U+FFFD or 锟斤拷 (U+FFFD's UTF-8 bytes read as GBK): characters already lost when the
    text was decoded with ``errors="replace"``; nothing can repair them."""
    return "regenerate these records from the original source"


@rule("data.control_chars", "No control characters", WARN)
def control_chars(ctx: dict) -> str:
    """C0/C1 control characters other than tab and newline (NUL, ESC, U+0080-U+009F): left by
    binary copy-paste or terminal logs; tokenizers map them to odd byte tokens."""
    return "strip them (`--fix OUT` removes C0 control characters)"


@rule("data.html_remnants", "No HTML remnants", WARN)
def html_remnants(ctx: dict) -> str:
    """HTML tags or entities (``<p>``, ``<br>``, ``&nbsp;``) in text that is not a code sample
    (texts with a ``` fence are skipped): scraped pages not cleaned, which the model will
    imitate. Data-Juicer's clean_html_mapper removes the same."""
    return "strip the markup (e.g. with selectolax or html.unescape) before training"


@rule("data.repetition", "No runaway repetition", WARN)
def repetition(ctx: dict) -> str:
    """A piece of text repeated 5 or more times in a row over 100+ characters (at the end of a
    text, where a loop that hit the length limit leaves it, or in its middle): a generation loop
    saved as data (distilled datasets), which teaches the model to loop."""
    return "drop or regenerate these samples"


@rule("data.too_long", "Samples fit --max-tokens", WARN)
def too_long(ctx: dict) -> str:
    """Samples over ``--max-tokens``, with the side that is lost: TRL's SFTTrainer keeps the
    start (``truncation_mode="keep_start"``, ``max_length=1024``), so the answer's end goes;
    LLaMA-Factory truncates to ``cutoff_len`` (2048); Axolotl drops the sample
    (``excess_length_strategy: drop``). Token counts are exact with ``--tokenizer``, else an
    estimate."""
    return (f"raise cutoff_len / max_length to {ctx.get('longest', '?')} (the longest sample), or split or drop "
            "these samples")


@rule("data.identical_pair", "Preference pairs differ", WARN)
def identical_pair(ctx: dict) -> str:
    """A preference pair whose rejected answer equals the chosen one (after lower-casing and
    collapsing whitespace). DPO's loss on it is the constant log 2 and its gradient zero (the
    chosen and rejected log-ratios cancel: Rafailov et al. 2023, eq. 7; TRL ``DPOTrainer``); a
    reward model learns nothing from it either. Usually a generation or merge step that wrote the
    same text twice."""
    return "regenerate or drop these pairs"


# --------------------------------------------------------------------------------------------
# across records and splits


@rule("data.duplicate", "No exact duplicates", WARN)
def duplicate(ctx: dict) -> str:
    """The same sample again, after lower-casing and collapsing whitespace: duplicates are
    trained on several times per epoch (overweighted) and inflate the sample count."""
    return "drop the repeats" + _fix_or_drop(ctx)


@rule("data.near_duplicate", "No near-duplicates", WARN)
def near_duplicate(ctx: dict) -> str:
    """Pairs whose character n-gram Jaccard similarity is at least ``--near-dup-threshold``
    (0.8 by default: Lee et al. 2022 and NeMo Curator use 0.8, The Stack 0.7), found by MinHash
    LSH and confirmed exactly. Template-filled or lightly edited copies overweight one sample."""
    return "keep one of each pair (raise --near-dup-threshold if these are intended variants)"


@rule("data.leakage", "Eval prompts not in train", FAIL)
def leakage(ctx: dict) -> str:
    """An eval sample whose prompt (the user turns, normalised) is also a train prompt: the eval
    loss then measures memorisation. GPT-3 and lm-evaluation-harness decontaminate by n-gram
    overlap; an identical prompt is the plainest case."""
    return "remove these samples from the eval split (or from train)"


@rule("data.near_leakage", "Eval samples not near-copies of train", WARN)
def near_leakage(ctx: dict) -> str:
    """An eval sample within the near-duplicate threshold of a train sample (MinHash LSH, exact
    Jaccard confirmation): paraphrase-level contamination."""
    return "remove these samples from the eval split"


@rule("data.no_eval", "An eval split", WARN)
def no_eval(ctx: dict) -> str:
    """No ``--eval`` split: without one, overfitting is invisible (LLaMA-Factory's ``val_size``
    defaults to 0, so there is no evaluation unless set)."""
    return "pass --eval EVAL, or hold out 1-5% (LLaMA-Factory: val_size: 0.02)"


# --------------------------------------------------------------------------------------------


@dataclass
class Hits:
    """Hits per rule id: a count of records and the first ``keep`` locations with their detail.
    Hits of one rule in one record (two unknown roles) are one record, the details joined."""

    keep: int = 5
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)  # rule id -> where its last hit was

    def add(self, rule_id: str, where: str, detail: str) -> None:
        if self.last.get(rule_id) == where:
            examples = self.examples[rule_id]
            if examples[-1][0] == where:
                examples[-1] = (where, f"{examples[-1][1]} and {detail}")
            return
        self.last[rule_id] = where
        n = self.counts.get(rule_id, 0)
        self.counts[rule_id] = n + 1
        if n < self.keep:
            self.examples.setdefault(rule_id, []).append((where, detail))


def select(only: tuple[str, ...], skip: tuple[str, ...]) -> list[Rule]:
    for pattern in (*only, *skip):
        if not any(fnmatch.fnmatchcase(r, pattern) for r in RULES):
            raise InputError(f"unknown check id {pattern!r} (data rules: {', '.join(RULES)})")
    return [r for r in RULES.values()
            if (not only or any(fnmatch.fnmatchcase(r.id, p) for p in only))
            and not any(fnmatch.fnmatchcase(r.id, p) for p in skip)]


def findings(rules: list[Rule], hits: Hits, where: str, ctx: dict, skipped: dict[str, str]) -> list[Finding]:
    """One finding per rule: its hits summarised, or a pass, or a skip with the reason."""
    out = []
    for r in rules:
        if r.id in skipped:
            out.append(Finding(r.id, Status.SKIP, where, r.title, GROUP, skipped[r.id], "", "", {}))
            continue
        count = hits.counts.get(r.id, 0)
        if not count:
            out.append(Finding(r.id, Status.PASS, where, r.title, GROUP, "none found", "", "", {"count": 0}))
            continue
        examples = hits.examples[r.id]
        if r.id in SPLIT_LEVEL:  # about a split, not its records
            out.append(Finding(r.id, r.status, examples[0][0], r.title, GROUP, examples[0][1], r.title.lower(),
                               r.fix(ctx), {}))
            continue
        first = "; ".join(f"{loc} {detail}" for loc, detail in examples)
        more = count - len(examples)
        noun = "record" if count == 1 else "records"
        observed = f"{count:,} {noun}: {first}" + (f"; and {more:,} more" if more else "")
        out.append(Finding(
            r.id, r.status, examples[0][0] if count == 1 else where, r.title, GROUP, observed,
            r.title.lower(), r.fix(ctx),
            {"count": count, "locations": [{"at": loc, "detail": d} for loc, d in examples]},
        ))
    return out
