"""Faults refused before anything is trained or written outside the homes: a site id that
climbs out of the home, a member site without data, a run store of a newer version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from consortium.cli import main
from consortium.store.run_store import RunStore
from policies.loader import default_policy_path
from tests.cli.invoke import Outcome, invoke

POLICY = default_policy_path().read_text(encoding="utf-8")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import consortium.run.simulation as simulation

    monkeypatch.setattr(simulation, "simulate", lambda *a, **k: pytest.fail("a run started"))

    def call(*args: str) -> Outcome:
        return invoke(main, "consortium", ["run", *args], capsys, monkeypatch)

    return call


def _policy(tmp_path: Path, sites: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("sites: [cleveland, hungary, long_beach, switzerland]",
                                   f"sites: {sites}"), encoding="utf-8")
    assert f"sites: {sites}" in path.read_text()
    return path


def test_a_site_id_that_climbs_out_of_the_home_is_refused(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = _policy(tmp_path, "[cleveland, hungary, long_beach, '../../escaped']")
    outcome = run("--policy", str(policy))
    assert outcome.code == 2, outcome.output
    assert "sites[3]" in outcome.err and "'../../escaped'" in outcome.err
    assert not list(tmp_path.parent.rglob("escaped*"))


def test_a_member_site_without_data_is_refused_before_the_run(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The member list is the policy's: a member the demonstration has no data for is refused,
    never silently replaced by another hospital."""
    policy = _policy(tmp_path, "[hungary, long_beach, switzerland, mayo]")
    outcome = run("--policy", str(policy))
    assert outcome.code == 2, outcome.output
    assert "'mayo'" in outcome.err


def test_a_store_of_a_newer_version_is_refused_before_training(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "newer.sqlite"
    RunStore(store).close()
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    outcome = run("--store", str(store))
    assert outcome.code == 1, outcome.output
    assert "newer version" in outcome.err
