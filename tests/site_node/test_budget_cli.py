"""``site-node budget`` never reports an unspent budget for a site it cannot find (issue 14); it
lists the rounds runs under way reserved and releases one for a run the admin knows is dead."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from site_node.cli import main as site_main
from site_node.home import demo_site_home
from site_node.privacy import reservations
from site_node.privacy.admission import Ceilings, admit
from site_node.privacy.ledger import SiteLedger
from tests.cli.invoke import Outcome, invoke
from tests.site_node.factories import DELTA, mech, site_home

Run = Callable[..., Outcome]


@pytest.fixture
def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    def run(*args: str) -> Outcome:
        return invoke(site_main, "site-node", list(args), capsys, monkeypatch)

    return run


def _refused(result: Outcome, *names: str) -> None:
    assert result.code != 0, result.output
    assert "Traceback" not in result.output and "spent nothing" not in result.output
    for name in names:
        assert name in result.err, (name, result.err)


def test_a_home_that_does_not_exist_is_an_error_naming_it(site_node: Run, tmp_path: Path
                                                          ) -> None:
    typo = tmp_path / "hoem"
    _refused(site_node("budget", "--home", str(typo)), str(typo), "not a site home")
    assert not typo.exists()


def test_an_unknown_demo_site_is_an_error_naming_it(site_node: Run) -> None:
    _refused(site_node("budget", "--demo-site", "hungray"), "'hungray'",
             str(demo_site_home("hungray")))


def test_a_missing_state_dir_or_default_home_is_an_error(site_node: Run, tmp_path: Path
                                                         ) -> None:
    _refused(site_node("budget", "--state-dir", str(tmp_path / "nope")), str(tmp_path / "nope"))
    _refused(site_node("budget"), "not a site home")  # $SITE_NODE_HOME was never initialised


def test_a_real_home_with_an_empty_ledger_spent_nothing(site_node: Run, tmp_path: Path) -> None:
    home = site_home(tmp_path)
    result = site_node("budget", "--home", str(home.root))
    assert result.code == 0 and "spent nothing" in result.out


def test_reservations_are_shown_and_can_be_released(site_node: Run, tmp_path: Path) -> None:
    home = site_home(tmp_path)
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        admit(ledger, site="hungary", run_id="killed-run", rnd=1, rounds_planned=3,
              mechanism=mech(), ceilings=Ceilings(DELTA, 100.0, 100.0))
    shown = site_node("budget", "--home", str(home.root), "--json")
    assert shown.code == 0
    (reserved,) = json.loads(shown.out)["reservations"]
    assert (reserved["run_id"], reserved["rounds"]) == ("killed-run", 3)
    text = site_node("budget", "--home", str(home.root))
    assert "killed-run" in text.out and "Reserved" in text.out
    assert site_node("budget", "--home", str(home.root), "--release", "killed-run").code == 0
    with SiteLedger.in_state_dir(home.state_dir, readonly=True) as ledger:
        assert reservations.reservations(ledger) == []
    _refused(site_node("budget", "--home", str(home.root), "--release", "killed-run"),
             "killed-run", "no reservation")
