"""Fixtures shared by the consortium tests: the embedded policy, site keys, an audited store."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.loader import LoadedPolicy, load_policy
from tests.consortium.audit_fixture import AuditedRun, default_site_keys, write_audited_run


@pytest.fixture
def loaded() -> LoadedPolicy:
    """The embedded consortium policy."""
    return load_policy()


@pytest.fixture
def site_keys() -> dict[str, Ed25519PrivateKey]:
    """One Ed25519 receipt key per member site (the same keys the audited run enrols)."""
    return default_site_keys()


@pytest.fixture
def audited(tmp_path: Path) -> AuditedRun:
    """A completed 4-site, 2-round run whose audit trail is genuine."""
    return write_audited_run(tmp_path)
