"""``site-node status``: the last run by the consortium's run id, for deployed and demo sites.

The site's privacy ledger is the record of what it ran (real SQLite ledgers here); the
SuperNode's log only knows Flower's numeric run id, which no coordinator command uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from site_node.cli import main as site_main
from site_node.home import SiteHome, demo_site_home, ensure_site_home, init_site_home
from site_node.privacy.ledger import SiteLedger
from tests.cli.invoke import Outcome, invoke
from tests.site_node.factories import DELTA, mech


def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              *args: str) -> Outcome:
    return invoke(site_main, "site-node", list(args), capsys, monkeypatch)


def _train(home: SiteHome, run_id: str, rounds: int) -> None:
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        for rnd in range(1, rounds + 1):
            ledger.record(run_id=run_id, rnd=rnd, policy_sha256="p" * 64, mechanism=mech(),
                          delta=DELTA)


def _last_run(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("last run"))


def test_status_names_the_consortium_run_not_flowers_numeric_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = init_site_home(tmp_path / "s", "hungary")
    _train(home, "20261205-heart-a1b2", 2)
    home.log_file.write_text("INFO : [RUN 4871236, ROUND 2] fit\n", encoding="utf-8")
    result = site_node(capsys, monkeypatch, "status", "--home", str(home.root))
    assert result.code == 0, result.output
    line = _last_run(result.out)
    assert "run 20261205-heart-a1b2, round 2 trained at" in line and "4871236" not in line


def test_status_shows_a_refusal_as_the_last_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = init_site_home(tmp_path / "s", "hungary")
    _train(home, "run-a", 1)
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        ledger.record_refusal(run_id="run-b", rnd=1, reason="over the lifetime budget")
    result = site_node(capsys, monkeypatch, "status", "--home", str(home.root))
    assert "run run-b, round 1 refused at" in _last_run(result.out)


def test_status_before_any_training_names_flowers_run_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = init_site_home(tmp_path / "s", "hungary")
    assert "never" in _last_run(site_node(capsys, monkeypatch, "status", "--home",
                                          str(home.root)).out)
    home.log_file.write_text("INFO : [RUN 4871236, ROUND 1] fit\n", encoding="utf-8")
    line = _last_run(site_node(capsys, monkeypatch, "status", "--home", str(home.root)).out)
    assert "Flower run 4871236, round 1 (nothing trained or refused yet)" in line


def test_status_of_a_demo_site_shows_the_last_run_its_ledger_lists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = ensure_site_home(demo_site_home("cleveland"), "cleveland")  # as `consortium run` does
    _train(home, "demo-run-1", 2)
    _train(home, "demo-run-2", 3)
    by_name = site_node(capsys, monkeypatch, "status", "--demo-site", "cleveland")
    assert by_name.code == 0, by_name.output
    assert "run demo-run-2, round 3 trained at" in _last_run(by_name.out)
    assert "site      cleveland" in by_name.out
    by_home = site_node(capsys, monkeypatch, "status", "--home", str(home.root))
    assert "run demo-run-2, round 3 trained at" in _last_run(by_home.out)


def test_status_of_an_unknown_demo_site_or_two_homes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    unknown = site_node(capsys, monkeypatch, "status", "--demo-site", "cleveland")
    assert unknown.code == 1 and "no demonstration site 'cleveland'" in unknown.err
    both = site_node(capsys, monkeypatch, "status", "--demo-site", "cleveland", "--home",
                     str(tmp_path))
    assert both.code == 1 and "not both" in both.err


def test_status_of_a_node_whose_pid_another_program_now_holds_says_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = init_site_home(tmp_path / "s", "hungary")
    home.write_status(state="connected", pid=os.getpid())  # this test runner: not a SuperNode
    result = site_node(capsys, monkeypatch, "status", "--home", str(home.root))
    assert result.code == 0, result.output
    assert "state     stopped (process gone)" in result.out
