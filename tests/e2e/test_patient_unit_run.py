"""``consortium run --example heart-visits`` end to end: patient-level DP-SGD in simulation.

Real processes, Flower simulation, Opacus, SecAgg+. Every ε says it is patient-level: the
export, every stored receipt (version 3), each site's ledger (``site-node budget``); and
``consortium audit verify`` re-accounts every receipt at its patient rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consortium.home import HOME_ENV
from site_node.home import HOME_ENV as SITE_HOME_ENV

pytestmark = pytest.mark.slow


SITE_NODE = "import sys; from site_node.cli import main; sys.argv[0] = 'site-node'; main()"


def _run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    start = ["-m", module] if module != "site-node" else ["-c", SITE_NODE]
    return subprocess.run([sys.executable, *start, *args], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "COLUMNS": "200", **env})


def test_a_patient_level_run_says_its_unit_everywhere_and_verifies(tmp_path: Path) -> None:
    env = {HOME_ENV: f"{tmp_path}/home", SITE_HOME_ENV: f"{tmp_path}/sites"}
    done = _run("consortium", "run", "--example", "heart-visits", "--rounds", "2", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "patient-level" in done.stdout
    export = json.loads(_run("consortium", "export", env=env).stdout)
    assert export["privacy_unit"] == "patient"
    assert export["task"]["privacy_unit"]["patient_column"] == "patient_id"
    sites = export["rounds"][-1]["sites"]
    assert set(sites) == {"cleveland_pt", "hungary_pt", "long_beach_pt", "switzerland_pt"}
    assert all(s["trained"] and s["epsilon"] > 0 for s in sites.values())
    verified = _run("consortium", "audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    budget = _run("site-node", "budget", "--demo-site", "hungary_pt", "--json", env=env)
    assert budget.returncode == 0, budget.stderr
    ledger = json.loads(budget.stdout)
    assert ledger["privacy_unit"] == "patient"
    assert {h["privacy_unit"] for h in ledger["history"]} == {"patient"}
