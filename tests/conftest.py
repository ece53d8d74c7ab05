"""Test-wide isolation: every test gets its own consortium home and site home.

The local demonstration keeps each site's ledger (its lifetime privacy budget, which never
forgets) and keys in site homes, and the consortium key and run store in the consortium home;
tests must never spend a real user's budget, nor each other's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.home import HOME_ENV
from site_node.home import HOME_ENV as SITE_HOME_ENV


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "consortium-home"
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.setenv(SITE_HOME_ENV, str(tmp_path / "site-home"))
    return home
