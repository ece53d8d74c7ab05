"""Unit tests of the dashboard's settings and frames, its launch command and its imports."""

from __future__ import annotations

import ast
import sys
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from consortium.cli.run import streamlit_command
from consortium.home import HOME_ENV
from consortium.store.records import RoundRecord, RunRecord, SiteRoundRecord
from dashboard import config, frames
from tests.dashboard.stores import SITES, site_record

ROOT = Path(__file__).resolve().parents[2]


def test_store_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    assert config.store_path(["--store", "/x/a.sqlite"]) == Path("/x/a.sqlite")
    assert config.store_path(["--other", "1"]) == tmp_path / "home" / "runs.sqlite"
    monkeypatch.delenv(HOME_ENV)
    assert config.store_path([]) == Path("~/.hospital-consortium/runs.sqlite").expanduser()
    monkeypatch.setenv(HOME_ENV, "")
    assert config.store_path([]) == Path("~/.hospital-consortium/runs.sqlite").expanduser()


def test_site_names_and_colours() -> None:
    assert config.site_name("long_beach") == "VA Long Beach"
    assert config.site_name("oslo") == "oslo"
    colours = [config.site_colour(s) for s in SITES]
    assert len(set(colours)) == 4
    assert config.site_colour("oslo") == config.site_colour("oslo")
    assert config.ordered_sites(["zeta", "switzerland", "alpha", "cleveland"]) == [
        "cleveland", "switzerland", "alpha", "zeta"]


def _run(ceiling: float = 3.0) -> RunRecord:
    return RunRecord(run_id="r", started_at="2025-01-01T00:00:00+00:00", status="running",
                     engine="simulation", policy_sha256="h", policy_json="{}", delta=1e-5,
                     epsilon_ceiling=ceiling, rounds_planned=10, seed=1, sites=SITES,
                     secagg_json="{}")


def _round(r: int, sites: tuple[str, ...] = SITES) -> RoundRecord:
    return RoundRecord(round=r, status="ok", started_at="t", finished_at="t", duration_s=1.0,
                       sites=tuple(site_record(s, r) for s in sites))


def test_budget_forecast_is_linear_in_the_latest_increment() -> None:
    sites = frames.sites_frame([_round(1), _round(2), _round(3, SITES[1:])])
    budget = frames.budget_frame(_run(), sites).set_index("site")
    eps = {r: float(site_record("hungary", r).epsilon or 0.0) for r in (2, 3)}
    rate = eps[3] - eps[2]
    assert budget.loc["hungary", "rate"] == pytest.approx(rate)
    assert budget.loc["hungary", "rounds_affordable"] == int((3.0 - eps[3]) // rate)
    assert budget.loc["cleveland", "last_round"] == 2  # dropped out of round 3
    assert budget.loc["cleveland", "epsilon"] == site_record("cleveland", 2).epsilon
    assert budget.loc["cleveland", "rounds_affordable"] is not None


def test_budget_over_ceiling_and_no_epsilon() -> None:
    sites = frames.sites_frame([_round(1), _round(2)])
    over = frames.budget_frame(_run(ceiling=0.1), sites)
    assert (over["remaining"] == 0).all() and (over["rounds_affordable"] == 0).all()
    empty = frames.budget_frame(_run(), frames.sites_frame([]))
    assert empty["rounds_affordable"].isna().all() and (empty["epsilon"] == 0).all()


def test_participation_with_unexpected_site() -> None:
    rounds = [_round(1, (*SITES[:2], "oslo"))]
    part = frames.participation_frame(_run(), frames.rounds_frame(rounds),
                                      frames.sites_frame(rounds))
    state = dict(zip(part["site"], part["participation"], strict=True))
    assert state == {"cleveland": "took part", "hungary": "took part",
                     "long_beach": "dropped out", "switzerland": "dropped out",
                     "oslo": "took part"}


def test_a_refusing_site_did_not_train_and_keeps_its_reason() -> None:
    rnd = RoundRecord(round=1, status="ok", started_at="t", finished_at="t", duration_s=1.0,
                      sites=(site_record("cleveland", 1),
                             site_record("hungary", 1, refusal="lifetime ceiling")))
    sites = frames.sites_frame([rnd])
    assert sites.set_index("site").loc["hungary", "refusal"] == "lifetime ceiling"
    part = frames.participation_frame(_run(), frames.rounds_frame([rnd]), sites)
    state = dict(zip(part["site"], part["participation"], strict=True))
    assert state["hungary"] == "did not train" and state["cleveland"] == "took part"
    assert frames.rounds_frame([rnd])["sites_trained"].tolist() == [1]


def test_the_frames_show_every_stored_field_of_a_round_and_a_site() -> None:
    rounds = [_round(1)]
    shown = frames.rounds_frame(rounds)
    assert [c for c in shown.columns if c != "sites_trained"] == [
        f.name for f in fields(RoundRecord) if f.name != "sites"]
    sites = frames.sites_frame(rounds)
    assert set(sites.columns) == {"round", "site_name", *(f.name for f in fields(SiteRoundRecord))}
    hints = get_type_hints(SiteRoundRecord)
    for f in fields(SiteRoundRecord):
        if float in get_args(hints[f.name]):  # a float figure: NaN where a site has none
            assert sites[f.name].dtype == "float64", f.name


def test_parse_json() -> None:
    assert frames.parse_json('{"a": 1}') == ({"a": 1}, None)
    assert frames.parse_json("[1]") == ({"value": [1]}, None)
    assert frames.parse_json("{")[1] is not None and frames.parse_json(None)[0] == {}


def test_launch_command_serves_the_installed_dashboard(tmp_path: Path) -> None:
    cmd = streamlit_command(tmp_path / "s.sqlite", 8642, "0.0.0.0")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[4]) == ROOT / "dashboard" / "app.py"  # the editable install's package
    flags = dict(zip(cmd[5:15:2], cmd[6:15:2], strict=True))
    assert flags == {"--server.port": "8642", "--server.address": "0.0.0.0",
                     "--server.headless": "true", "--browser.gatherUsageStats": "false",
                     "--client.toolbarMode": "viewer"}
    assert cmd[15:] == ["--", "--store", str(tmp_path / "s.sqlite")]
    assert config.store_path(cmd[16:]) == tmp_path / "s.sqlite"  # what the app reads


ALLOWED = ("consortium.store", "consortium.audit", "consortium.errors", "consortium.home")


def test_dashboard_reads_the_consortium_only_through_its_store_and_audit_modules() -> None:
    seen = set()
    for path in (ROOT / "dashboard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] == "consortium":
                    seen.add(name)
                    assert name.startswith(ALLOWED), (path, name)
    assert "consortium.store.run_store" in seen and "consortium.audit.log" in seen
