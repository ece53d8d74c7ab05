"""The site's privacy ledger: persistent, append-only, private, composed never added."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from site_node.errors import LedgerError
from site_node.privacy import budget
from site_node.privacy.accountant import epsilon
from site_node.privacy.ledger import SiteLedger
from site_node.protocol.mechanism import Mechanism
from tests.site_node.factories import DELTA, mech

RUNS = {"run-a": [mech(1.2)] * 3, "run-b": [mech(0.9, 0.125, 8)] * 2, "run-c": [mech(2.0)] * 4}


def fill(ledger: SiteLedger, runs: dict[str, list[Mechanism]] = RUNS) -> None:
    for run_id, mechs in runs.items():
        for rnd, m in enumerate(mechs, start=1):
            ledger.record(run_id=run_id, rnd=rnd, policy_sha256="p" * 64, mechanism=m,
                          delta=DELTA)


def test_lifetime_is_one_composition_over_every_event(tmp_path: Path) -> None:
    with SiteLedger(tmp_path / "ledger.sqlite") as ledger:
        fill(ledger)
        life = budget.lifetime(ledger)
        per_run = [budget.run_epsilon(ledger, r, delta=DELTA, accountant_name="rdp")
                   for r in RUNS]
    assert life is not None and (life.delta, life.accountant, life.events, life.runs) == (
        DELTA, "rdp", 9, 3)
    every = [m for mechs in RUNS.values() for m in mechs]
    assert life.epsilon == pytest.approx(epsilon(every, delta=DELTA, accountant="rdp"),
                                         rel=1e-12)
    assert max(per_run) < life.epsilon < sum(per_run)  # composed, not added


def test_ledger_persists_and_refuses_a_round_twice(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with SiteLedger(path) as ledger:
        fill(ledger)
        with pytest.raises(LedgerError, match="UNIQUE"):
            ledger.record(run_id="run-a", rnd=1, policy_sha256="p", mechanism=mech(),
                          delta=DELTA)
    with SiteLedger(path) as ledger:
        events = ledger.events()
        assert [(e.run_id, e.round) for e in events] == [
            (r, i) for r, mechs in RUNS.items() for i in range(1, len(mechs) + 1)]
        assert [e.mechanism for e in ledger.events("run-b")] == RUNS["run-b"]
        assert ledger.run_ids() == list(RUNS)
        assert all(e.delta == DELTA and e.policy_sha256 == "p" * 64 for e in events)


@pytest.mark.parametrize("sql", [
    "DELETE FROM dp_events", "UPDATE dp_events SET noise_multiplier=99",
    "DELETE FROM refusals", "UPDATE refusals SET reason='none'",
])
def test_ledger_is_append_only(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "ledger.sqlite"
    with SiteLedger(path) as ledger:
        fill(ledger)
        ledger.record_refusal(run_id="run-z", rnd=1, reason="too much")
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(sql)
    conn.close()
    with SiteLedger(path) as ledger:
        assert len(ledger.events()) == 9 and ledger.refusals()[0].reason == "too much"


def test_refusals_are_recorded_per_run(tmp_path: Path) -> None:
    with SiteLedger(tmp_path / "l.sqlite") as ledger:
        ledger.record_refusal(run_id="r1", rnd=1, reason="a")
        ledger.record_refusal(run_id="r2", rnd=3, reason="b")
        ledger.record_refusal(run_id="r1", rnd=2, reason="c")
        assert [(r.round, r.reason) for r in ledger.refusals("r1")] == [(1, "a"), (2, "c")]
        assert [r.run_id for r in ledger.refusals()] == ["r1", "r2", "r1"]
        assert ledger.events() == [] and ledger.run_ids() == []


def test_the_ledger_file_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with SiteLedger.in_state_dir(state) as ledger:
        fill(ledger)
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert os.stat(state / "ledger.sqlite").st_mode & 0o777 == 0o600


def test_read_only_ledgers(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no privacy ledger"):
        SiteLedger.in_state_dir(tmp_path / "none", readonly=True)
    assert not (tmp_path / "none").exists()  # looking created nothing
    with SiteLedger.in_state_dir(tmp_path) as ledger:
        fill(ledger)
    with SiteLedger.in_state_dir(tmp_path, readonly=True) as ledger:
        assert len(ledger.events()) == 9
        with pytest.raises(LedgerError):
            ledger.record(run_id="x", rnd=1, policy_sha256="p", mechanism=mech(), delta=DELTA)


def test_an_unopenable_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open privacy ledger"):
        SiteLedger.in_state_dir(tmp_path)
