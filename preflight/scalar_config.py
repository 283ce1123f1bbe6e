"""Top-level scalar settings from a JSON or YAML config file, without a YAML library.

Launcher configs (Accelerate's ``main_process_ip``) and training configs (``learning_rate``,
``lr_scheduler_type``) keep the settings preflight needs as top-level ``key: value`` lines; only
those are read from YAML (an indented line belongs to a nested block and is skipped). JSON is
parsed whole. Errors name the file (and line for JSON).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from preflight.errors import InputError

_TOP_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*(#.*)?$")
_NULLS = ("", "null", "~", "None")


def read_scalars(path: Path, keys: tuple[str, ...], what: str) -> dict[str, object]:
    """The values of ``keys`` that the file sets (YAML values as strings, quotes removed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", source=str(path), line=exc.lineno) from None
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object for a {what}", source=str(path))
        return {k: data[k] for k in keys if data.get(k) is not None}
    values: dict[str, object] = {}
    for line in text.splitlines():
        match = _TOP_LEVEL.match(line)
        if match and match.group(1) in keys and match.group(2) not in _NULLS:
            values[match.group(1)] = match.group(2).strip("'\"")
    return values
