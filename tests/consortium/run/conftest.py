"""Fixtures of the run tests: the workflow harness (see :mod:`.harness`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.consortium.run.harness import Harness


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch)


@pytest.fixture
def make_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Harness]:
    return lambda **kw: Harness(tmp_path, monkeypatch, **kw)
