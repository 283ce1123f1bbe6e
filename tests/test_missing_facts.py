"""Nothing crashes because a fact is missing: every nullable fact set to null, every check still runs."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest
from conftest import FIXTURES, fixture_facts, judge

from preflight.facts import NodeFacts
from preflight.findings import Status


def _null_everything(obj):  # noqa: ANN001, ANN202
    """A copy of a facts dataclass with every Optional field set to None, recursively."""
    if isinstance(obj, list):
        return [_null_everything(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _null_everything(v) for k, v in obj.items()}
    if not dataclasses.is_dataclass(obj):
        return obj
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for field in dataclasses.fields(obj):
        hint = hints[field.name]
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
        changes[field.name] = None if optional else _null_everything(getattr(obj, field.name))
    return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_checks_survive_every_nullable_fact_missing(name):
    facts: NodeFacts = _null_everything(fixture_facts(name))
    findings = judge(facts, expect_gpus=8)
    errors = {i: f.observed for i, f in findings.items() if f.status == Status.ERROR}
    assert errors == {}
