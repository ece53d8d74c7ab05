"""``consortium run`` of a task with a policy of privacy terms only, in a fresh consortium and
site homes under a test's folder (real processes, Flower simulation)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from consortium.home import HOME_ENV
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.e2e.test_own_task import run

TERMS = Path(__file__).resolve().parents[2] / "policies" / "privacy-terms.yaml"


def run_terms_only(tmp_path: Path, task: Path, files: dict[str, Path], *, rounds: int
                   ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The run's outcome, and the environment naming its homes (for export, audit, …)."""
    env = {HOME_ENV: str(tmp_path / "home"), SITE_HOME_ENV: str(tmp_path / "sites")}
    data = [x for s, p in files.items() for x in ("--data", f"{s}={p}")]
    done = run("consortium", "run", "--task", str(task), *data, "--policy", str(TERMS),
               "--rounds", str(rounds), env=env)
    return done, env
