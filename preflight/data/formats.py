"""Which shape the records have (alpaca, ShareGPT, OpenAI/TRL messages, plain text) and which keys
and role names carry what: detected from the first records, forced with ``--format``, or taken
from a LLaMA-Factory ``dataset_info.json`` entry.

TRL's conversational prompt-completion records (``prompt`` and ``completion`` lists of turns) are
read as one conversation.

Sources: LLaMA-Factory ``data/README.md`` (alpaca columns ``instruction/input/output/system/
history``; ShareGPT ``conversations`` with ``from``/``value`` and the tags ``human``, ``gpt``,
``observation``, ``function_call``, ``system``); OpenAI chat fine-tuning and TRL ``messages`` with
``role``/``content`` and roles ``system, user, assistant, tool, function``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from preflight.data.preference import CHOSEN, REJECTED, is_pair
from preflight.data.readers import FileSet, folder_files
from preflight.errors import InputError

FORMATS = ("alpaca", "sharegpt", "messages", "text")
DETECT_RECORDS = 200  # records looked at to detect the format

# a role's class: U the user side, A the assistant side, C an assistant tool call, T a tool
# result (the user side of a tool exchange), S the system prompt
MESSAGE_ROLES = {"user": "U", "assistant": "A", "system": "S", "tool": "T", "function": "T", "ipython": "T",
                 "developer": "S"}
SHAREGPT_ROLES = {"human": "U", "gpt": "A", "system": "S", "observation": "T", "function_call": "C"}
# keys commonly carried beside the sample; not worth a finding
METADATA_KEYS = frozenset({"id", "idx", "uid", "source", "category", "lang", "language", "meta", "metadata",
                           "dataset", "task", "tags", "label", "split", "tools", "images", "videos", "audios",
                           "score", "domain", "type", "name"})


# dataset_info.json columns read beside the text, whichever names they map to
MAPPED_COLUMNS = ("tools", "images", "videos", "audios", "kto_tag")
# record-level keys of OpenAI chat fine-tuning beside ``messages`` (and ``tools``, above), and
# the ``prompt``/``prompt_id`` columns HuggingFaceH4/ultrachat_200k ships beside its messages (the
# first user turn again, and its hash), which trainers reading ``messages`` pass over
CHAT_RECORD_KEYS = frozenset({"functions", "parallel_tool_calls", "prompt", "prompt_id"})


@dataclass(frozen=True)
class Schema:
    """What to read from each record. ``roles`` maps a role name to its class (see above)."""

    format: str
    how: str  # how it was decided, for the report
    # alpaca
    prompt: str = "instruction"
    query: str = "input"
    response: str = "output"
    history: str = "history"
    system: str = "system"
    # chat
    messages: str = "messages"
    role: str = "role"
    content: str = "content"
    roles: dict[str, str] = field(default_factory=lambda: dict(MESSAGE_ROLES))
    completion: str | None = None  # TRL conversational prompt-completion: turns continue here
    rejected: str | None = None  # preference pairs: the rejected answer (the chosen one is the answer)
    mapped: frozenset[str] = frozenset()  # other columns a dataset_info.json entry maps (tools, images, ...)
    # text
    text: str = "text"

    @cached_property
    def known_keys(self) -> frozenset[str]:
        if self.format == "alpaca":
            own = {self.prompt, self.query, self.response, self.history, self.system}
        elif self.format == "text":
            own = {self.text}
        else:
            own = {self.messages, self.system, self.completion or self.messages, *CHAT_RECORD_KEYS}
        if self.rejected:
            own.add(self.rejected)
        return frozenset(own) | self.mapped | METADATA_KEYS

    @cached_property
    def message_keys(self) -> frozenset[str]:
        return frozenset({self.role, self.content, "name", "weight", "tool_calls", "tool_call_id",
                          "function_call", "thinking", "reasoning_content", "loss"})

    def to_json(self) -> dict[str, Any]:
        if self.format == "alpaca":
            keys = {"prompt": self.prompt, "query": self.query, "response": self.response,
                    "history": self.history, "system": self.system}
        elif self.format == "text":
            keys = {"text": self.text}
        else:
            keys = {"messages": self.messages, "role": self.role, "content": self.content,
                    "roles": dict(self.roles)}
            if self.completion:
                keys["completion"] = self.completion
        if self.rejected:
            keys["rejected"] = self.rejected
        return {"format": self.format, "how": self.how, "keys": keys}

    @property
    def pairs(self) -> str:
        """How the report names preference data (``""`` for anything else)."""
        chosen = self.response if self.format == "alpaca" else (self.completion or self.messages)
        return f"preference pairs: {chosen!r} over {self.rejected!r}" if self.rejected else ""


def _chat_schema(fmt: str, how: str, key: str, first_message: dict | None) -> Schema:
    """A chat schema whose role/content tags come from the first message seen."""
    if first_message is not None and "from" in first_message:
        return Schema(fmt, how, messages=key, role="from", content="value", roles=dict(SHAREGPT_ROLES))
    return Schema(fmt, how, messages=key, role="role", content="content", roles=dict(MESSAGE_ROLES))


# Columns published beside whole-conversation pairs, which trainers do not read: TRL's
# implicit-prompt shape as HuggingFaceH4/ultrafeedback_binarized ships it (prompt, prompt_id,
# messages = the chosen conversation again, score_chosen, score_rejected).
IMPLICIT_PAIR_EXTRAS = frozenset({"prompt", "prompt_id", "messages", "score_chosen", "score_rejected"})


def _pair_vote(record: dict) -> tuple[str, Schema] | None:
    """A preference pair's shape (see preference.py), or None."""
    pair = {"rejected": REJECTED}
    chosen = record.get(CHOSEN)
    if isinstance(chosen, list):
        first = next((m for m in chosen if isinstance(m, dict)), None)
        if first is not None and first.get("role", first.get("from")) not in ("assistant", "gpt"):
            # the whole conversation (TRL's implicit prompt): read it alone, whatever else the
            # record repeats of it (a ``messages`` column would double every sample)
            fmt = "sharegpt" if "from" in first else "messages"
            return fmt, replace(_chat_schema(fmt, "", CHOSEN, first), completion=None,
                                mapped=IMPLICIT_PAIR_EXTRAS, **pair)
    for key in ("conversations", "messages", "prompt", CHOSEN):
        value = record.get(key)
        if isinstance(value, list):  # turns: the chosen ones follow them, unless they are the chosen
            first = next((m for m in value if isinstance(m, dict)), None)
            fmt = "sharegpt" if first is not None and "from" in first else "messages"
            return fmt, replace(_chat_schema(fmt, "", key, first), completion=None if key == CHOSEN else CHOSEN, **pair)
    if "instruction" in record:
        return "alpaca", Schema("alpaca", "", response=CHOSEN, **pair)
    if "prompt" in record or "question" in record:
        prompt = "prompt" if "prompt" in record else "question"
        return "alpaca", Schema("alpaca", "", prompt=prompt, query="(none)", response=CHOSEN, **pair)
    return None


def _vote(record: Any) -> tuple[str, Schema] | None:
    if not isinstance(record, dict):
        return None
    if is_pair(record):
        return _pair_vote(record)
    for key in ("messages", "conversations", "conversation"):
        value = record.get(key)
        if isinstance(value, list):
            first = next((m for m in value if isinstance(m, dict)), None)
            fmt = "sharegpt" if first is not None and "from" in first else "messages"
            return fmt, _chat_schema(fmt, "", key, first)
    if "instruction" in record and "output" in record:
        return "alpaca", Schema("alpaca", "")
    if isinstance(record.get("prompt"), list) and isinstance(record.get("completion"), list):
        first = next((m for m in record["prompt"] if isinstance(m, dict)), None)
        return "messages", replace(_chat_schema("messages", "", "prompt", first), completion="completion")
    if "prompt" in record and ("completion" in record or "response" in record):
        response = "completion" if "completion" in record else "response"
        return "alpaca", Schema("alpaca", "", prompt="prompt", query="(none)", response=response)
    if "instruction" in record and "response" in record:
        return "alpaca", Schema("alpaca", "", response="response")
    if "question" in record and "answer" in record:
        return "alpaca", Schema("alpaca", "", prompt="question", query="(none)", response="answer")
    if isinstance(record.get("text"), str):
        return "text", Schema("text", "")
    return None


def _undetected(records: list[Any], keys: Counter[str]) -> str:
    """Why no format was detected, with the likely cause: records wrapped in one object
    (``{"data": [...]}``, which HF ``datasets`` reads only with ``field="data"``) or a CSV
    separated by something other than commas and tabs (``datasets`` reads it as one column too)."""
    if len(records) == 1 and isinstance(records[0], dict):
        wrapped = [k for k, v in records[0].items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if wrapped:
            key = wrapped[0]
            return (f"one JSON object whose {key!r} holds {len(records[0][key])} records: write the records "
                    f"one per line (`jq -c '.{key}[]' FILE > FILE.jsonl`) or as a top-level array")
    seen = ", ".join(repr(k) for k, _ in keys.most_common(8)) or "no JSON objects"
    advice = "pass --format alpaca|sharegpt|messages|text"
    if len(keys) == 1:
        sep = next((c for c in ";|" if c in next(iter(keys))), None)
        if sep:
            advice = f"the header is one column holding {sep!r}: save the file comma- or tab-separated"
    return f"cannot tell the format from the first records (keys: {seen}); {advice}"


def detect(records: list[Any], forced: str, source: str) -> Schema:
    """The schema of the first records: the most common shape among them. ``forced`` (from
    ``--format``) picks the family; the key and role names still come from the records."""
    votes: Counter[str] = Counter()
    schemas: dict[str, Schema] = {}
    keys: Counter[str] = Counter()
    for record in records:
        if isinstance(record, dict):
            keys.update(str(k) for k in record)
        vote = _vote(record)
        if vote is not None:
            votes[vote[0]] += 1
            schemas.setdefault(vote[0], vote[1])
    if forced != "auto":
        if forced in schemas:
            return replace(schemas[forced], how="--format")
        twin = {"sharegpt": "messages", "messages": "sharegpt"}.get(forced)
        if twin in schemas:  # ShareGPT-style with role/content, or messages with from/value
            return replace(schemas[twin], format=forced, how="--format")
        defaults = {"alpaca": Schema("alpaca", "--format"),
                    "sharegpt": Schema("sharegpt", "--format", messages="conversations", role="from",
                                       content="value", roles=dict(SHAREGPT_ROLES)),
                    "messages": Schema("messages", "--format"),
                    "text": Schema("text", "--format")}
        return defaults[forced]
    if not votes:
        raise InputError(_undetected(records, keys), source=source)
    fmt, count = votes.most_common(1)[0]
    looked = len(records)
    schema = schemas[fmt]
    pairs = f" ({schema.pairs})" if schema.pairs else ""
    return replace(schema, how=f"detected: {count} of the first {looked} records look like {fmt}{pairs}")


# --------------------------------------------------------------------------------------------
# LLaMA-Factory dataset_info.json


def from_dataset_info(info_path: Path, name: str | None) -> tuple[Path | FileSet, Schema]:
    """The data file(s) and schema of ``dataset_info.json`` entries: ``name`` (``a,b`` for several,
    read as one split, as LLaMA-Factory concatenates them), or the only local one. A ``file_name``
    that is a folder is every file in it."""
    source = str(info_path)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=source) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not valid JSON: {str(exc).splitlines()[0]}", source=source) from None
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise InputError("expected an object of dataset entries", source=source)
    local = [n for n, e in info.items() if "file_name" in e]
    if name is None:
        if len(local) != 1:
            listed = ", ".join(repr(n) for n in local[:10]) or "none"
            raise InputError(f"pass --dataset NAME to pick an entry (local ones: {listed})", source=source)
        name = local[0]
    names = [n.strip() for n in name.split(",") if n.strip()]  # LLaMA-Factory's ``dataset: a,b``
    files: list[Path] = []
    schema: Schema | None = None
    for one in names:
        entry = info.get(one)
        if entry is None:
            raise InputError(f"Undefined dataset {one!r} in dataset_info.json", source=source)
        data_path = info_path.parent / _local_file(entry, one, source)
        how = f"{info_path.name} entry {one!r}" if len(names) == 1 else f"{info_path.name} entries {', '.join(names)}"
        if entry.get("num_samples") is not None:
            how += (f"; num_samples {entry['num_samples']}: LLaMA-Factory trains on that many drawn at random, "
                    "all are checked")
        this = schema_from_entry(entry, how, source)
        if schema is not None and replace(this, how="") != replace(schema, how=""):
            raise InputError(f"entries {names[0]!r} and {one!r} are read differently (formatting, columns or "
                             "tags): check them one at a time", source=source)
        schema = schema or this
        files += folder_files(data_path) if data_path.is_dir() else [data_path]
    if schema is None:
        raise InputError("--dataset names no entry", source=source)
    if len(files) == 1:
        return files[0], schema
    return FileSet(", ".join(str(f) for f in files[:2]) + (f" (+{len(files) - 2} files)" if len(files) > 2 else ""),
                   files), schema


def _local_file(entry: dict[str, Any], name: str, source: str) -> str:
    """The ``file_name`` of an entry, or a one-line error for an entry that is not a local file."""
    if "file_name" in entry:
        return str(entry["file_name"])
    for key, what in (("hf_hub_url", "on the Hugging Face Hub"), ("ms_hub_url", "on ModelScope"),
                      ("om_hub_url", "on Modelers"), ("cloud_file_name", "in cloud storage")):
        if key in entry:
            fetch = (f": `huggingface-cli download --repo-type dataset {entry[key]} --local-dir DIR`"
                     if key == "hf_hub_url" else "")
            raise InputError(f"entry {name!r} is {what} ({key} {entry[key]!r}), not a local file; download it{fetch} "
                             "and check its data file, or add an entry with file_name", source=source)
    if "script_url" in entry:
        raise InputError(f"entry {name!r} is built by a loading script (script_url {entry['script_url']!r}), which "
                         "preflight does not run; check the data files the script reads", source=source)
    raise InputError(f"entry {name!r} has no file_name (nor a hub URL)", source=source)


def schema_from_entry(entry: dict[str, Any], how: str, source: str) -> Schema:
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise InputError(f"formatting {formatting!r}: expected alpaca or sharegpt", source=source)
    columns = entry.get("columns") or {}
    tags = entry.get("tags") or {}
    if not isinstance(columns, dict) or not isinstance(tags, dict):
        raise InputError("columns and tags must be objects", source=source)
    mapped = frozenset(str(columns[k]) for k in MAPPED_COLUMNS if k in columns)
    ranking = bool(entry.get("ranking"))
    chosen, rejected = columns.get("chosen", CHOSEN), columns.get("rejected", REJECTED)
    pair = {"rejected": rejected} if ranking else {}
    if ranking:
        how += f" (ranking: preference pairs, {chosen!r} over {rejected!r})"
    if formatting == "alpaca":
        return Schema("alpaca", how, prompt=columns.get("prompt", "instruction"), query=columns.get("query", "input"),
                      response=chosen if ranking else columns.get("response", "output"),
                      history=columns.get("history", "history"), system=columns.get("system", "system"),
                      mapped=mapped, **pair)
    default = SHAREGPT_ROLES if formatting == "sharegpt" else MESSAGE_ROLES
    role_tag = tags.get("role_tag", "from" if formatting == "sharegpt" else "role")
    content_tag = tags.get("content_tag", "value" if formatting == "sharegpt" else "content")
    names = {"user_tag": "U", "assistant_tag": "A", "observation_tag": "T", "function_tag": "C", "system_tag": "S"}
    roles = dict(default)
    for tag, cls in names.items():
        if tag in tags:
            roles = {k: v for k, v in roles.items() if v != cls}
            roles[str(tags[tag])] = cls
    return Schema("sharegpt" if formatting == "sharegpt" else "messages", how,
                  messages=columns.get("messages", "conversations"), system=columns.get("system", "system"),
                  role=role_tag, content=content_tag, roles=roles, completion=chosen if ranking else None,
                  mapped=mapped, **pair)


def matching_entry(data_path: Path) -> tuple[str, dict[str, Any]] | None:
    """The entry of a ``dataset_info.json`` beside ``data_path`` whose ``file_name`` is that file."""
    info_path = data_path.parent / "dataset_info.json"
    if not info_path.is_file() or info_path == data_path:
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None  # not ours to judge here; the data file is still checked with detection
    if not isinstance(info, dict):
        return None
    for name, entry in info.items():
        if isinstance(entry, dict) and str(entry.get("file_name", "")) == data_path.name:
            return name, entry
    return None
