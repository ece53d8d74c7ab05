"""Unit tests of the dashboard's settings, frames and launcher, and its import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SITES, site_record

from consortium.records import RoundRecord, RunRecord
from dashboard import config, frames, launch


def test_store_path_precedence(tmp_path: Path) -> None:
    env = {"HC_STORE": str(tmp_path / "env.sqlite")}
    assert config.store_path(["--store", "/x/a.sqlite"], env) == Path("/x/a.sqlite")
    assert config.store_path(["--other", "1"], env) == tmp_path / "env.sqlite"
    assert config.store_path([], {}) == Path("~/.hospital-consortium/runs.sqlite").expanduser()
    assert config.store_path([], {"HC_STORE": ""}) == config.DEFAULT_STORE.expanduser()


def test_site_names_and_colours() -> None:
    assert config.site_name("long_beach") == "VA Long Beach"
    assert config.site_name("oslo") == "oslo"
    colours = [config.site_colour(s) for s in SITES]
    assert len(set(colours)) == 4
    assert config.site_colour("oslo") == config.site_colour("oslo")
    assert config.ordered_sites(["zeta", "switzerland", "alpha", "cleveland"]) == [
        "cleveland", "switzerland", "alpha", "zeta"]


def _run(ceiling: float = 8.0) -> RunRecord:
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
    assert budget.loc["hungary", "rate"] == rate
    assert budget.loc["hungary", "rounds_affordable"] == int((8.0 - eps[3]) // rate)
    assert budget.loc["cleveland", "last_round"] == 2  # dropped out of round 3
    assert budget.loc["cleveland", "epsilon"] == site_record("cleveland", 2).epsilon
    assert budget.loc["cleveland", "rounds_affordable"] is not None


def test_budget_over_ceiling_and_no_epsilon() -> None:
    sites = frames.sites_frame([_round(1), _round(2)])
    over = frames.budget_frame(_run(ceiling=0.5), sites)
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


def test_parse_json() -> None:
    assert frames.parse_json('{"a": 1}') == ({"a": 1}, None)
    assert frames.parse_json("[1]") == ({"value": [1]}, None)
    assert frames.parse_json("{")[1] is not None and frames.parse_json(None)[0] == {}


def test_launch_command(tmp_path: Path) -> None:
    cmd = launch.command(tmp_path / "s.sqlite", port=8642, host="0.0.0.0")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[4]) == ROOT / "dashboard" / "app.py"
    flags = dict(zip(cmd[5:13:2], cmd[6:13:2], strict=True))
    assert flags == {"--server.port": "8642", "--server.address": "0.0.0.0",
                     "--server.headless": "true", "--browser.gatherUsageStats": "false"}
    assert cmd[13:] == ["--", "--store", str(tmp_path / "s.sqlite")]


def test_launch_returns_exit_code(monkeypatch, tmp_path: Path) -> None:
    seen = {}

    def fake_run(argv, check):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    assert launch.launch(tmp_path / "s.sqlite", port=9000) == 3
    assert seen["argv"] == launch.command(tmp_path / "s.sqlite", 9000)


def test_dashboard_never_imports_ml_stacks() -> None:
    code = (
        "import sys, json, runpy\n"
        "import dashboard.app, dashboard.launch, dashboard.data, dashboard.charts\n"
        "import dashboard.views.overview, dashboard.views.privacy\n"
        "import dashboard.views.participation, dashboard.views.audit\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'flwr', 'opacus'})\n"
        "ours = sorted(m for m in sys.modules if m.startswith('consortium'))\n"
        "print(json.dumps({'bad': bad, 'consortium': ours}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bad"] == []
    assert set(result["consortium"]) <= {"consortium", "consortium.store", "consortium.records"}


def test_dashboard_sources_import_only_store_and_records() -> None:
    for path in (ROOT / "dashboard").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and words[1].startswith("consortium"):
                # The Audit page builds the auditor report lazily from the torch-free audit
                # modules (their own test checks they never import torch/Flower/Opacus).
                assert words[1] in ("consortium.store", "consortium.records",
                                    "consortium.audit_report", "consortium.audit_html"), (
                    path, line)
