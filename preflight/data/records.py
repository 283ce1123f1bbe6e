"""One record against its schema: keys, types, nulls, empty fields and the order of chat turns.

Returns the record's texts as a :class:`Sample` (what the later checks read) and its problems as
``(rule id, detail)`` pairs. A record too broken to read a sample from returns ``None``.
Written for speed: the common, clean record costs a handful of dict lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight.data.dedup import normalise
from preflight.data.fields import MISSING, Problem, content_text, has_media, string_field, type_name
from preflight.data.formats import Schema
from preflight.data.preference import check_rejected_text, check_rejected_turn, reply_turns

_ROLE_NAMES = {"U": "user", "A": "assistant", "C": "tool call", "T": "tool result", "S": "system"}


@dataclass(slots=True)
class Sample:
    """The texts of one record: ``prompt`` is everything before the final answer (system,
    earlier turns), ``answer`` the final assistant turn (the whole text for plain text data);
    ``user`` the user turns only (the key for train/eval leakage); ``turns`` user+assistant turns;
    ``rest`` turns after the final answer; ``rejected`` a preference pair's rejected answer (the
    chosen one is ``answer``). Both are part of the record's identity: two pairs that differ only
    in the rejected answer are not duplicates."""

    prompt: str
    answer: str
    user: str
    turns: int
    rest: str = ""
    rejected: str | None = None

    @property
    def full(self) -> str:
        text = f"{self.prompt}\n{self.answer}" if self.prompt else self.answer
        if self.rest:
            text = f"{text}\n{self.rest}"
        return text if self.rejected is None else f"{text}\n{self.rejected}"


def check_record(record: Any, schema: Schema, problems: list[Problem]) -> Sample | None:
    """Problems of ``record`` appended to ``problems``; its sample, or None when unreadable."""
    if record.__class__ is not dict:
        problems.append(("data.wrong_type", f"a record is {type_name(record)}, expected an object"))
        return None
    fmt = schema.format
    if fmt == "alpaca":
        sample = _alpaca(record, schema, problems)
    elif fmt == "text":
        sample = _text(record, schema, problems)
    else:
        sample = _chat(record, schema, problems)
    if not schema.known_keys.issuperset(record):
        # a null column carries nothing: Parquet written by HF datasets unifies the rows' schemas,
        # so a record holds every column any record has, null where it had none
        extra = [k for k in record.keys() - schema.known_keys if record[k] is not None]
        if extra:
            problems.append(("data.unexpected_key", ", ".join(sorted(repr(str(k)) for k in extra)[:5])))
    return sample


def _alpaca(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    sample = _alpaca_sample(record, s, problems)
    if s.rejected is not None:  # a preference pair: ``s.response`` is the chosen answer
        rejected = check_rejected_text(record, s.rejected, problems)
        if sample is not None and rejected is not None:
            _pair(sample, rejected, s, problems)
    return sample


def _pair(sample: Sample, rejected: str, s: Schema, problems: list[Problem]) -> None:
    """A preference pair's rejected answer joins the sample's identity; one equal to the chosen
    answer teaches nothing."""
    sample.rejected = rejected
    if rejected.strip() and normalise(rejected) == normalise(sample.answer):
        problems.append(("data.identical_pair", f"the chosen and the {s.rejected!r} answer are the same"))


def _alpaca_sample(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    instruction, output = record.get(s.prompt), record.get(s.response)
    query, system = record.get(s.query, ""), record.get(s.system, "")
    if (instruction.__class__ is str and output.__class__ is str and query.__class__ is str
            and system.__class__ is str and not record.get(s.history)):  # the common record, fast
        user = f"{instruction}\n{query}" if query else instruction
        if not output or output.isspace():
            problems.append(("data.empty_answer", f"{s.response!r} is empty" if not output else
                             f"{s.response!r} is only whitespace"))
        if not user or user.isspace():
            problems.append(("data.empty_prompt", f"{s.prompt!r} and {s.query!r} are empty"))
        return Sample(f"{system}\n{user}" if system else user, output, user, 2)
    instruction = string_field(record, s.prompt, True, problems)
    query = string_field(record, s.query, False, problems)
    output = string_field(record, s.response, True, problems)
    system = string_field(record, s.system, False, problems)
    history = record.get(s.history)
    earlier = ""
    turns = 2
    if history:
        if history.__class__ is not list or not all(
            h.__class__ in (list, tuple) and len(h) == 2 and all(x.__class__ is str for x in h) for h in history
        ):
            problems.append(("data.wrong_type", f"{s.history!r} must be a list of [prompt, response] pairs"))
            return None
        earlier = "\n".join(f"{q}\n{a}" for q, a in history)
        turns += 2 * len(history)
    if instruction is None or output is None or query is None or system is None:
        return None
    user = f"{instruction}\n{query}" if query else instruction
    if not user.strip():
        problems.append(("data.empty_prompt", f"{s.prompt!r}" + (f" and {s.query!r} are" if query is not None else " is")
                         + " empty"))
    if not output.strip():
        problems.append(("data.empty_answer", f"{s.response!r} is empty" if not output else
                         f"{s.response!r} is only whitespace"))
    prompt = "\n".join(p for p in (system, earlier, user) if p)
    return Sample(prompt, output, user, turns)


def _text(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    text = string_field(record, s.text, True, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(("data.empty_answer", f"{s.text!r} is empty"))
    return Sample("", text, text, 1)


def _chat(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    messages = record.get(s.messages, MISSING)
    if messages.__class__ is not list:
        if messages is MISSING:
            problems.append(("data.missing_key", f"no {s.messages!r}"))
        elif messages is None:
            problems.append(("data.null_value", f"{s.messages!r} is null"))
        else:
            problems.append(("data.wrong_type", f"{s.messages!r} is {type_name(messages)}, expected a list of turns"))
        return None
    rejected = check_rejected_turn(record, s.rejected, s.role, s.content, s.roles, problems) \
        if s.rejected is not None else None
    if s.completion is not None:  # TRL prompt-completion, a preference pair: the answer's turns follow
        completion = reply_turns(record, s.completion, problems)
        if completion is None:
            return None
        messages = messages + completion
    if not messages:
        problems.append(("data.no_assistant_turn", f"{s.messages!r} is an empty list"))
        return None
    system = string_field(record, s.system, False, problems)
    roles, role_key, keys = s.roles, s.role, s.message_keys
    texts: list[str] = [system] if system else []
    classes: list[str] = []
    user: list[str] = []
    ok = system is not None
    order_problem = ""
    prev = ""
    for i, m in enumerate(messages):
        if m.__class__ is not dict:
            problems.append(("data.wrong_type", f"turn {i} is {type_name(m)}, expected an object"))
            ok = False
            continue
        role = m.get(role_key, MISSING)
        if role is MISSING:
            problems.append(("data.missing_key", f"turn {i} has no {role_key!r}"))
            ok = False
            continue
        cls = roles.get(role) if role.__class__ is str else None
        if cls is None:
            known = ", ".join(roles)
            problems.append(("data.unknown_role", f"turn {i} {role_key} {role!r} (known: {known})"))
            ok = False
            continue
        if len(m) > 2 and m.keys() - keys:
            # (null keys: a struct unified across the turns of a Parquet file, see check_record)
            unknown = sorted(repr(str(k)) for k in m.keys() - keys if m[k] is not None)
            if unknown:
                problems.append(("data.unexpected_key", f"turn {i}: {', '.join(unknown[:3])}"))
        text = content_text(m, s.content, cls, i, problems)
        if text is None:
            ok = False
            continue
        if not order_problem:
            order_problem = _order(prev, cls, i)
        prev = cls
        classes.append(cls)
        texts.append(text)
        if cls == "U":
            user.append(text)
            if not text.strip() and not has_media(m, s.content):
                problems.append(("data.empty_prompt", f"turn {i} ({role}) is empty"))
        elif (cls == "A" and not text.strip() and not (m.get("tool_calls") or m.get("function_call"))
              and not has_media(m, s.content)):
            problems.append(("data.empty_answer", f"turn {i} ({role}) is empty"))
    if not ok:
        return None
    if order_problem:
        problems.append(("data.turn_order", order_problem))
    dialogue = [c for c in classes if c != "S"]
    if "A" not in dialogue and "C" not in dialogue:
        problems.append(("data.no_assistant_turn", f"{len(dialogue)} turn(s), none from the assistant"))
    elif dialogue and dialogue[-1] != "A":
        problems.append(("data.last_turn_not_assistant",
                         f"the last turn ({len(classes) - 1}) is {_ROLE_NAMES[dialogue[-1]]}"))
    last_answer = max((i for i, c in enumerate(classes) if c == "A"), default=-1)
    offset = len(texts) - len(classes)
    answer = texts[offset + last_answer] if last_answer >= 0 else ""
    prompt = "\n".join(texts[: offset + last_answer] if last_answer >= 0 else texts)
    sample = Sample(prompt, answer, "\n".join(user), sum(1 for c in dialogue if c in "UA"),
                    "\n".join(texts[offset + last_answer + 1:]) if last_answer >= 0 else "")
    if rejected is not None:
        _pair(sample, rejected, s, problems)
    return sample


def _order(prev: str, cls: str, index: int) -> str:
    """Why turn ``index`` (of class ``cls``) cannot follow one of class ``prev``, or ``""``.

    Sources: LLaMA-Factory's converter (ShareGPT: human/observation at odd positions, gpt/function
    at even ones, else "Invalid role tag" and the example is emptied); OpenAI chat format (system
    first, assistant replies to user or tool)."""
    if cls == "S":
        return "" if prev == "" else f"a system turn at position {index}, after the conversation started"
    allowed = {"U": ("", "A"), "A": ("U", "T"), "C": ("U", "T"), "T": ("A", "C", "T")}[cls]
    if prev in allowed or (prev == "S" and cls == "U"):
        return ""
    if prev in ("", "S"):
        return f"the conversation starts with {_a(cls)} turn (turn {index})"
    if prev == cls or (prev in "AC" and cls in "AC"):
        return f"two {_ROLE_NAMES[cls]} turns in a row (turns {index - 1} and {index})"
    return f"{_a(cls)} turn right after {_a(prev)} turn (turn {index})"


def _a(cls: str) -> str:
    name = _ROLE_NAMES[cls]
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
