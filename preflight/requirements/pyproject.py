"""Read ``[project.dependencies]`` and ``[project.optional-dependencies]`` of a pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from preflight.errors import InputError
from preflight.requirements.parse import (
    ParsedRequirements,
    Requirement,
    Skipped,
    _LineError,
    _Where,
    read_text,
    requirement_from_pep508,
)
from preflight.toml_text import TomlError, parse_toml

__all__ = ["parse_pyproject"]


def parse_pyproject(path: Path) -> ParsedRequirements:
    """The PEP 621 dependencies of ``path``, each with the line its string is written on.

    Items of ``[project.optional-dependencies]`` carry the extra's name in ``group``. A file
    without a ``[project]`` table (Poetry, other tools) and dynamic dependencies are reported in
    ``skipped``. Invalid TOML, wrongly typed tables and invalid PEP 508 strings are InputErrors.
    """
    source = str(path)
    text = read_text(Path(path))
    try:
        data = parse_toml(text)
    except TomlError as exc:
        raise InputError(f"invalid TOML: {exc}", source=source, line=exc.line) from None
    result = ParsedRequirements(files=[source])
    locate = _Locator(text)
    project = data.get("project")
    if project is None:
        result.skipped.append(
            Skipped(
                source,
                1,
                "",
                "no [project] table; dependencies in other tools' tables are not read",
            )
        )
        return result
    if not isinstance(project, dict):
        raise InputError("[project] must be a table", source=source, line=locate.key("project"))
    dynamic = project.get("dynamic", [])
    for key in ("dependencies", "optional-dependencies"):
        if isinstance(dynamic, list) and key in dynamic:
            result.skipped.append(
                Skipped(
                    source,
                    locate.key("dynamic") or 1,
                    key,
                    f"project.{key} is dynamic; not checked",
                )
            )

    dependencies = project.get("dependencies", [])
    _check_list(dependencies, "project.dependencies", source, locate.key("dependencies"))
    for item in dependencies:
        result.requirements.append(_requirement(item, None, source, locate))

    optional = project.get("optional-dependencies", {})
    if not isinstance(optional, dict):
        raise InputError(
            "project.optional-dependencies must be a table of lists",
            source=source,
            line=locate.key("optional-dependencies"),
        )
    for group, items in optional.items():
        _check_list(items, f"project.optional-dependencies.{group}", source, locate.key(group))
        for item in items:
            result.requirements.append(_requirement(item, group, source, locate))
    return result


def _check_list(value: Any, key: str, source: str, line: int | None) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{key} must be a list of strings", source=source, line=line)


def _requirement(item: str, group: str | None, source: str, locate: _Locator) -> Requirement:
    line = locate.string(item)
    try:
        return requirement_from_pep508(item, _Where(source, line, item.strip(), False, group))
    except _LineError as exc:
        raise InputError(str(exc), source=source, line=line) from None


class _Locator:
    """Best-effort line numbers: TOML parsers do not report them, so find the text again."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.cursor = 0

    def _line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def key(self, key: str) -> int | None:
        match = re.search(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", self.text, re.MULTILINE)
        return self._line(match.start()) if match else None

    def string(self, value: str) -> int:
        """The line of the next quoted ``value`` after the last one found (dependencies are
        listed in file order); searched from the start again when not found after it."""
        for start in (self.cursor, 0):
            offsets = [
                offset
                for offset in (
                    self.text.find(q + value + q, start) for q in ('"', "'", '"""', "'''")
                )
                if offset >= 0
            ]
            if offsets:
                offset = min(offsets)
                self.cursor = offset + len(value) + 1
                return self._line(offset)
        return 1
