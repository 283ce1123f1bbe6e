"""Reading one field of a record: a string, or a chat turn's content (a string, or OpenAI / Hugging
Face content parts), with the problem when it is missing, null or of the wrong type."""

from __future__ import annotations

from typing import Any

Problem = tuple[str, str]  # (rule id, detail)
MISSING = object()


def type_name(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean",
                                         int: "number", float: "number"}.get(type(value), type(value).__name__)


def string_field(record: dict, key: str, required: bool, problems: list[Problem]) -> str | None:
    value = record.get(key, MISSING)
    if value.__class__ is str:
        return value
    if value is MISSING:
        if required:
            problems.append(("data.missing_key", f"no {key!r}"))
            return None
        return ""
    if value is None:
        if required:
            problems.append(("data.null_value", f"{key!r} is null"))
            return None
        return ""
    problems.append(("data.wrong_type", f"{key!r} is {type_name(value)}, expected a string"))
    return None


def content_text(message: dict, key: str, cls: str, index: int, problems: list[Problem]) -> str | None:
    """The text of a turn's content under ``key``; ``cls`` is its role's class (records.py)."""
    content = message.get(key, MISSING)
    if content.__class__ is str:
        return content
    calls = cls in ("A", "C") and (message.get("tool_calls") or message.get("function_call"))
    if content is MISSING or content is None:
        if calls:
            return ""  # an assistant turn that only calls a tool has no content (OpenAI format)
        if content is MISSING:
            problems.append(("data.missing_key", f"turn {index} has no {key!r}"))
        else:
            problems.append(("data.null_value", f"turn {index} {key!r} is null"))
        return None
    if content.__class__ is list:
        text = parts_text(content)
        if text is not None:
            return text
        problems.append(("data.wrong_type", f"turn {index} {key!r} has a part that is neither "
                                            "{'type': 'text', 'text': ...} nor a typed media part"))
        return None
    problems.append(("data.wrong_type", f"turn {index} {key!r} is {type_name(content)}, expected a string"))
    return None


def parts_text(parts: list) -> str | None:
    """The text of OpenAI / Hugging Face content parts (``[{"type": "text", "text": ...},
    {"type": "image_url", ...}]``): the text parts joined; media parts (any other ``type``:
    ``image``, ``image_url``, ``input_audio``, ``video``, ``file``) carry no text. None when a
    part is not an object with a string ``type``, or a text part's ``text`` is not a string."""
    texts = []
    for part in parts:
        kind = part.get("type") if part.__class__ is dict else None
        if kind.__class__ is not str:
            return None
        if kind == "text":
            text = part.get("text")
            if text.__class__ is not str:
                return None
            texts.append(text)
    return "\n".join(texts)


def has_media(message: dict, content_key: str) -> bool:
    """A turn whose content parts include media (an image-only question is not empty)."""
    content = message.get(content_key)
    return content.__class__ is list and any(p.get("type") != "text" for p in content)
