"""What the deployed mode's commands print: rounds with each site's ε, no stray log lines, and
``--version`` on both command lines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from consortium.cli import main as consortium_main
from consortium.deployment import submit
from consortium.store.records import ROUND_OK, RoundRecord, SiteRoundRecord
from tests.child import ROOT
from tests.cli.invoke import invoke


def _round(rnd: int, eps: dict[str, float | None]) -> RoundRecord:
    return RoundRecord(round=rnd, status=ROUND_OK, started_at="", finished_at="",
                       duration_s=1.0, accuracy_mean=0.7,
                       sites=tuple(SiteRoundRecord(site=s, epsilon=e) for s, e in eps.items()))


def test_submit_follows_each_round_with_every_sites_cumulative_epsilon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = str(tmp_path / "home")
    assert invoke(consortium_main, "consortium", ["init", "--home", home], capsys,
                  monkeypatch).code == 0
    sub = submit.Submission(run_id="r1", flower_run_id=7, store=tmp_path / "runs.sqlite")
    monkeypatch.setattr(submit, "submit", lambda *_a, **_k: sub)

    def follow(*_a: object, on_round: Callable[[RoundRecord], None], **_k: object) -> str:
        on_round(_round(1, {"cleveland": 0.41234, "hungary": None}))
        on_round(_round(2, {"cleveland": 0.6, "hungary": 0.58}))
        return "finished:completed"

    monkeypatch.setattr(submit, "follow", follow)
    done = invoke(consortium_main, "consortium", ["submit", "--home", home], capsys,
                  monkeypatch)
    assert done.code == 0, done.output
    lines = done.out.splitlines()
    assert "round 1 ok, mean accuracy 0.700; ε cleveland 0.412, ε hungary —" in lines
    assert "round 2 ok, mean accuracy 0.700; ε cleveland 0.600, ε hungary 0.580" in lines
    assert any(line.startswith("Run finished: completed;") for line in lines), done.out


def _typed(prog: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``prog ARGS`` in a fresh interpreter (its own logging set-up, as typed)."""
    code = (f"import sys; from {prog}.cli import main; "
            f"sys.argv = [{prog!r}, *sys.argv[1:]]; main()")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_site_node_init_prints_no_log_lines(tmp_path: Path) -> None:
    done = _typed("site_node", "init", "--site-id", "cleveland", "--home",
                  str(tmp_path / "site"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stdout + done.stderr
    assert "Created site home" in done.stdout


@pytest.mark.parametrize("prog", ["consortium", "site_node"])
def test_both_command_lines_have_version(prog: str) -> None:
    done = _typed(prog, "--version", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{prog.replace('_', '-')} {version('hospital-consortium')}"


def _help(*args: str, columns: int) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-m", "consortium", *args, "--help"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return [line.strip(" │") for line in done.stdout.splitlines()]


@pytest.mark.parametrize("columns", [80, 120])
def test_help_reflows_sentences_and_gives_option_help_room(columns: int) -> None:
    lines = _help("run", columns=columns)
    text = " ".join(lines)
    # A docstring's paragraph is reflowed: no line ends where the source's line did.
    assert "given with --task FILE --data SITE=PATH" in text
    assert not any(line.endswith("given with") for line in lines), lines
    # Short option help fits on its row; the range of a number is not a column of its own.
    assert any(line.startswith("--rounds") and line.rstrip().endswith(
        "Rounds (0 or none: the policy's).") for line in lines), lines
    assert any(line.startswith("--port") and "PORT" in line
               for line in _help("dashboard", columns=columns))
