"""User settings: check selection, strictness and per-check thresholds.

Read from ``.preflight.toml`` (top-level keys) or the ``[tool.preflight]`` table of a
``pyproject.toml``, whichever is found first walking up from the current directory (a
``pyproject.toml`` without the table is passed over), or from ``--config PATH``. Command-line
flags override the file. Unknown keys, unknown check ids and wrongly typed values are input
errors naming the file and line.

    [tool.preflight]
    skip = ["gpu.persistence_mode"]
    strict = true
    expect_gpus = 8

    [tool.preflight.checks."gpu.memory_in_use"]
    max_used_mib = 2048
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preflight.errors import InputError
from preflight.toml_text import TomlError, parse_toml

if TYPE_CHECKING:  # the requirements hook reads settings without loading the node checks
    from preflight.compat import Matrix
    from preflight.registry import CheckSpec, RunOptions

Threshold = int | float


KEYS = {"only": list, "skip": list, "strict": bool, "expect_gpus": int, "checks": dict, "target": dict}
TARGET_KEYS = ("driver", "gpu", "python")


@dataclass(frozen=True)
class Settings:
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    strict: bool = False
    expect_gpus: int | None = None
    thresholds: dict[str, dict[str, Threshold]] = field(default_factory=dict)
    source: str = "command line"
    target: dict[str, str] = field(default_factory=dict)


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The first ``.preflight.toml`` or ``pyproject.toml`` with ``[tool.preflight]`` at or above ``start``."""
    for folder in [start, *start.parents]:
        dotfile = folder / ".preflight.toml"
        if dotfile.is_file():
            return dotfile, _read_toml(dotfile)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("preflight")
            if table is not None:
                if not isinstance(table, dict):
                    raise InputError("[tool.preflight] must be a table", source=str(pyproject))
                return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from None
    try:
        return parse_toml(text)
    except TomlError as exc:
        raise InputError(f"invalid TOML: {exc}", source=str(path), line=exc.line) from None


def _line_of(path: Path, key: str) -> int | None:
    """Best-effort line number of ``key`` in a TOML file, for error messages."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    pattern = re.compile(r'^\s*(\[.*)?["\']?' + re.escape(key) + r'["\']?\s*(=|\]|\.)')
    for number, line in enumerate(lines, 1):
        if pattern.search(line):
            return number
    return None


def load_settings(path: Path, table: dict[str, Any], specs: dict[str, CheckSpec] | None) -> Settings:
    """Validate a ``[tool.preflight]`` table against the known keys, checks and thresholds
    (``specs=None``: the ``[checks]`` table is left to the commands that run those checks)."""
    source = str(path)

    def error(key: str, message: str) -> InputError:
        return InputError(message, source=source, line=_line_of(path, key.split(".")[-1]))

    for key, value in table.items():
        if key not in KEYS:
            raise error(key, f"unknown key {key!r} (known: {', '.join(KEYS)})")
        expected = KEYS[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise error(key, f"{key} must be {expected.__name__}, got {value!r}")
    for key in ("only", "skip"):
        for item in table.get(key, []):
            if not isinstance(item, str):
                raise error(key, f"{key} entries must be check ids, got {item!r}")
    for key, value in table.get("target", {}).items():
        if key not in TARGET_KEYS:
            raise error(key, f"unknown target key {key!r} (known: {', '.join(TARGET_KEYS)})")
        if not isinstance(value, str):
            raise error(key, f"target.{key} must be a string, got {value!r}")
    thresholds: dict[str, dict[str, Threshold]] = {}
    for check_id, values in table.get("checks", {}).items() if specs is not None else ():
        if check_id not in specs:
            raise error(check_id, f"unknown check id {check_id!r} in [checks]")
        if not isinstance(values, dict):
            raise error(check_id, f"checks.{check_id} must be a table of thresholds")
        known = specs[check_id].thresholds
        for name, value in values.items():
            if name not in known:
                names = ", ".join(known) or "none"
                raise error(name, f"{check_id} has no threshold {name!r} (known: {names})")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise error(name, f"{check_id}.{name} must be a number, got {value!r}")
        thresholds[check_id] = dict(values)
    return Settings(
        only=tuple(table.get("only", ())),
        skip=tuple(table.get("skip", ())),
        strict=table.get("strict", False),
        expect_gpus=table.get("expect_gpus"),
        thresholds=thresholds,
        source=source,
        target=dict(table.get("target", {})),
    )


def resolve_settings(
    specs: dict[str, CheckSpec] | None, *, config: Path | None, cwd: Path
) -> Settings:
    """Settings from ``--config`` or the nearest config file; defaults when there is none."""
    if config is not None:
        if config.is_dir():
            raise InputError("is a directory, expected a TOML settings file", source=str(config))
        if not config.is_file():
            raise InputError("config file not found", source=str(config))
        data = _read_toml(config)
        if config.name == "pyproject.toml":
            data = data.get("tool", {}).get("preflight", {})
        return load_settings(config, data, specs)
    found = find_config(cwd)
    if found is None:
        return Settings()
    return load_settings(found[0], found[1], specs)


@dataclass(frozen=True)
class Selection:
    """The settings of one run, after the command line is laid over the settings file."""

    specs: list[CheckSpec]
    thresholds: dict[str, dict[str, Threshold]]
    strict: bool
    options: RunOptions


def effective(
    specs: dict[str, CheckSpec],
    *,
    config: Path | None,
    cwd: Path,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    strict: bool | None,
    expect_gpus: int | None,
    matrix: Matrix | None = None,
    use: tuple[str, ...] = (),
) -> Selection:
    """Command-line values win over the file's; ``--skip`` adds to the file's skips."""
    from preflight.registry import RunOptions, select

    settings = resolve_settings(specs, config=config, cwd=cwd)
    source = "--only/--skip" if (only or skip) else settings.source
    chosen = select(specs, only or settings.only, skip + settings.skip, source=source)
    return Selection(
        chosen,
        settings.thresholds,
        settings.strict if strict is None else strict,
        RunOptions(expect_gpus if expect_gpus is not None else settings.expect_gpus, matrix, use),
    )
