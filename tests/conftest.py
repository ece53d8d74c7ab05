"""Test-wide isolation: every test gets its own consortium home.

The simulation default keeps each site's ledger (its lifetime privacy budget, which never
forgets) and keys under the consortium home; tests must never spend a real user's budget, nor
each other's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.keys import HOME_ENV


@pytest.fixture(autouse=True)
def _isolated_consortium_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "consortium-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    return home
