"""Faults of a real run: Ctrl-C/SIGTERM end it promptly as interrupted; a run killed outright
(SIGKILL on its whole process group, as a crash or power cut would) is resumed from its last
completed round by exactly one of two resumes started at once, every trained round spent exactly
once, and its audit trail verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consortium.audit.log import AuditLog
from consortium.audit.trail import RUN_RESUME, RUN_STOP
from consortium.home import HOME_ENV
from consortium.store.records import RUN_COMPLETED, RUN_INTERRUPTED, RUN_RUNNING
from consortium.store.run_store import RunStore
from site_node.home import HOME_ENV as SITE_HOME_ENV
from site_node.privacy.ledger import SiteLedger

pytestmark = pytest.mark.slow
SITES = ["cleveland", "hungary", "long_beach", "switzerland"]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", HOME_ENV: str(tmp / "home"),
            SITE_HOME_ENV: str(tmp / "sites")}


def _start(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "consortium", "run", *args], env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _rounds_recorded(store: Path) -> int:
    try:
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_for_rounds(proc: subprocess.Popen[str], store: Path, n: int) -> None:
    deadline = time.monotonic() + 300
    while _rounds_recorded(store) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no round recorded in 300 s"
        time.sleep(0.5)


def _consortium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consortium", *args], env=_env(tmp),
                          capture_output=True, text=True, timeout=600, check=False)


def test_sigterm_ends_the_run_promptly_as_interrupted(tmp_path: Path) -> None:
    store = tmp_path / "home" / "runs.sqlite"
    proc = _start(tmp_path, "--rounds", "30")
    _wait_for_rounds(proc, store, 1)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=120)
    assert time.monotonic() - started < 60, out
    assert proc.returncode == 130, out
    assert "Resume it with: consortium run --resume" in out
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(rs.latest_run_id())
        assert run.status == RUN_INTERRUPTED
        assert len(rs.rounds(run.run_id)) < 30
    verify = _consortium(tmp_path, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_killed_run_is_resumed_and_every_round_is_spent_once(tmp_path: Path) -> None:
    store = tmp_path / "home" / "runs.sqlite"
    proc = _start(tmp_path, "--rounds", "4")
    _wait_for_rounds(proc, store, 1)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: Ray's workers too
    proc.communicate(timeout=60)
    with RunStore(store, readonly=True) as rs:
        run_id = rs.latest_run_id()
        assert rs.get_run(run_id).status == RUN_RUNNING  # nobody could record its end
        killed_at = len(rs.rounds(run_id))
    assert killed_at < 4

    # Two resumes at once (issue 14): one claims the run and continues it; the other starts
    # nothing and says why.
    both = [subprocess.Popen([sys.executable, "-m", "consortium", "run", "--resume"],
                             env=_env(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in both]
    done = [(p.returncode, out, err) for p, (out, err) in zip(both, outputs, strict=True)]
    winners = [d for d in done if d[0] == 0]
    assert len(winners) == 1, done
    _, out, err = winners[0]
    assert f"resumed at round {killed_at + 1}" in out.replace("\n", " "), out + err
    (loser,) = [d for d in done if d[0] != 0]
    assert any(why in loser[2] for why in ("was just taken by process", "is still running",
                                           "no interrupted run")), loser
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(run_id).status == RUN_COMPLETED
        rounds = rs.rounds(run_id)
    assert [r.round for r in rounds] == [1, 2, 3, 4]
    for site in SITES:
        state = tmp_path / "sites" / "demo" / site / "state"
        with SiteLedger.in_state_dir(state, readonly=True) as ledger:
            spent = [e.round for e in ledger.events(run_id)]
        assert sorted(set(spent)) == sorted(spent) and set(spent) <= {1, 2, 3, 4}
        trained = {r.round for r in rounds for s in r.sites if s.site == site and s.trained}
        assert trained <= set(spent)
    verify = _consortium(tmp_path, "audit", "verify", "--run", run_id)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with RunStore(store, readonly=True) as rs:
        kinds = [e.kind for e in AuditLog(rs.db).entries(run_id)]
    assert kinds.count(RUN_RESUME) == 1 and kinds.count(RUN_STOP) == 1
