"""Fixtures of the deployment command tests."""

from __future__ import annotations

import pytest

from site_node.deployment import processes


@pytest.fixture
def no_spawn(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Processes the command would have started (none is)."""
    spawned: list[object] = []
    monkeypatch.setattr(processes, "spawn", lambda *a, **k: spawned.append(a))
    return spawned
