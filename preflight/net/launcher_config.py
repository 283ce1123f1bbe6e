"""The rendezvous address and port a launcher config file names.

Reads Hugging Face Accelerate configs (``accelerate config`` writes YAML: ``main_process_ip`` and
``main_process_port`` at the top level; JSON configs use the same keys) without a YAML library:
only those two top-level scalar keys are needed. A missing file or a config without them is an
input error naming the file.
"""

from __future__ import annotations

from pathlib import Path

from preflight.errors import InputError
from preflight.scalar_config import read_scalars

_KEYS = ("main_process_ip", "main_process_port")


def rendezvous_from_config(path: Path) -> tuple[str | None, int | None]:
    """(address, port) from an Accelerate config; either may be None when the file leaves it out."""
    values = read_scalars(path, _KEYS, "launcher config")
    if not values:
        raise InputError("names neither main_process_ip nor main_process_port", source=str(path))
    port = None
    if "main_process_port" in values:
        number = str(values["main_process_port"])
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise InputError(f"main_process_port {number!r} is not a port", source=str(path))
        port = int(number)
    address = values.get("main_process_ip")
    return (str(address) if address is not None else None), port
