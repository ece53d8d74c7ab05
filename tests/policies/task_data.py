"""Helpers for task tests: the shipped heart-disease task as plain data, and edits of it."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from policies.example import load_example


def heart_data() -> dict[str, Any]:
    """The shipped heart-disease task as a fresh, mutable mapping."""
    data = yaml.safe_load(load_example("heart-disease").task.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def digits_data() -> dict[str, Any]:
    """The shipped digits task as a fresh, mutable mapping."""
    data = yaml.safe_load(load_example("digits").task.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def column(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The column named ``name`` of a tabular task mapping (to edit in place)."""
    found = next(c for c in data["columns"] if c["name"] == name)
    assert isinstance(found, dict)
    return found
