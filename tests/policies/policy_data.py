"""Helpers for policy tests: the shipped policy as plain data, and edits of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from policies.loader import default_policy_path


def default_data() -> dict[str, Any]:
    """The shipped consortium policy as a fresh, mutable mapping."""
    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def with_value(path: tuple[str, ...], value: Any, data: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """A copy of ``data`` (default: the shipped policy) with ``path`` set to ``value``."""
    out = copy.deepcopy(default_data() if data is None else data)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def write(tmp_path: Path, text: str | bytes, name: str = "policy.yaml") -> Path:
    """Write a policy file (text as UTF-8, bytes as they are)."""
    file = tmp_path / name
    if isinstance(text, bytes):
        file.write_bytes(text)
    else:
        file.write_text(text, encoding="utf-8")
    return file
