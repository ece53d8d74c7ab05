"""End to end: the embedded default (2 rounds) on Flower's simulation engine, then the audit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortium.audit_log import AuditLog
from consortium.cli import app

ROOT = Path(__file__).resolve().parents[2]
SITES = ("cleveland", "hungary", "long_beach", "switzerland")
RUN = """
import sys
from consortium.plan import make_plan
from consortium.simulation import simulate
plan = make_plan(store_path=sys.argv[1], rounds=2, seed=3)
print(simulate(plan).status)
"""


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("e2e") / "home"
    store = home / "runs.sqlite"
    env = {**os.environ, "HOSPITAL_CONSORTIUM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", RUN, str(store)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("completed"), res.stdout[-2000:]
    return store


@pytest.mark.slow
def test_every_site_and_round_has_a_receipt_and_verifies(simulated: Path) -> None:
    with AuditLog(simulated, readonly=True) as log:
        got = {(r.site, r.round) for r in log.receipts()}
        assert not [e for e in log.entries() if e.kind == "security"]
    assert got == {(s, r) for s in SITES for r in (1, 2)}
    res = CliRunner().invoke(app, ["audit", "verify", "--store", str(simulated)])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_one_changed_byte_fails_verification(simulated: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    shutil.copy(simulated, copy)
    data = bytearray(copy.read_bytes())
    at = data.index(b'"epsilon":') + len(b'"epsilon":') + 2  # a digit of a receipt's ε
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    copy.write_bytes(bytes(data))
    res = CliRunner().invoke(app, ["audit", "verify", "--store", str(copy)])
    assert res.exit_code == 1, res.output
    assert "FAILED" in res.output


@pytest.mark.slow
def test_report_opens_and_shows_every_site_and_round(simulated: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["audit", "report", "--store", str(simulated),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (html,) = tmp_path.glob("audit-*.html")
    (js,) = tmp_path.glob("audit-*.json")
    text, data = html.read_text(), json.loads(js.read_text())
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert {(r["site"], r["round"]) for r in data["receipts"]} == {
        (s, r) for s in SITES for r in (1, 2)}
    for site in SITES:
        assert site in text
