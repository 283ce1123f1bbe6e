"""The rendezvous address and port a launcher config file names.

Reads Hugging Face Accelerate configs (``accelerate config`` writes YAML: ``main_process_ip`` and
``main_process_port`` at the top level; JSON configs use the same keys) without a YAML library:
only those two top-level scalar keys are needed. A missing file or a config without them is an
input error naming the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from preflight.errors import InputError

_KEYS = ("main_process_ip", "main_process_port")
_LINE = re.compile(r"^(main_process_ip|main_process_port)\s*:\s*(.*?)\s*(#.*)?$")


def rendezvous_from_config(path: Path) -> tuple[str | None, int | None]:
    """(address, port) from an Accelerate config; either may be None when the file leaves it out."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("launcher config not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from None
    values: dict[str, str] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", source=str(path), line=exc.lineno) from None
        values = {k: str(data[k]) for k in _KEYS if isinstance(data, dict) and data.get(k) is not None}
    else:
        for line in text.splitlines():
            match = _LINE.match(line)  # top level only: no indentation
            if match and match.group(2) not in ("", "null", "~"):
                values[match.group(1)] = match.group(2).strip("'\"")
    port = None
    if "main_process_port" in values:
        number = values["main_process_port"]
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise InputError(f"main_process_port {number!r} is not a port", source=str(path))
        port = int(number)
    if not values:
        raise InputError("names neither main_process_ip nor main_process_port", source=str(path))
    return values.get("main_process_ip"), port
