"""Wrong values are refused with exit code 2 and one line that names them, before any work.

Each command runs through its real entry point (``main()`` and its one error handler).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consortium.cli import main as consortium_main
from policies.identity import SITE_ID_RULE
from policies.loader import default_policy_path
from site_node.cli import main as site_main
from tests.cli.invoke import Outcome, invoke

POLICY = default_policy_path().read_text(encoding="utf-8")


@pytest.fixture
def consortium(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``consortium ARGS`` in-process; training is forbidden (it must never start)."""
    import consortium.run.simulation as simulation

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("a run started although its settings were refused")

    monkeypatch.setattr(simulation, "simulate", no_training)

    def run(*args: str) -> Outcome:
        return invoke(consortium_main, "consortium", list(args), capsys, monkeypatch)

    return run


@pytest.fixture
def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``site-node ARGS`` in-process."""

    def run(*args: str) -> Outcome:
        return invoke(site_main, "site-node", list(args), capsys, monkeypatch)

    return run


def _one_error_line(result: Outcome, *names: str) -> str:
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_site_node_budget_refuses_a_negative_delta(site_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = site_node("budget", "--state-dir", str(tmp_path), "--delta", "-1")
    assert result.code == 2
    assert "--delta" in result.err and "(0, 1)" in result.err
    assert "Traceback" not in result.output


def test_consortium_run_refuses_absurd_rounds_before_training(consortium,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    line = _one_error_line(consortium("run", "--rounds", "10000000", "--store", str(store)),
                           "rounds", "10000000")
    assert line.startswith("error: ")
    assert not store.exists()


def test_site_node_init_refuses_a_path_as_site_id(site_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    line = _one_error_line(site_node("init", "--site-id", "../x", "--home", str(home)), "'../x'")
    assert SITE_ID_RULE in line
    assert not home.exists() and not (tmp_path / "x").exists()


BROKEN = {
    "duplicate-key": (POLICY.replace("rounds: 20", "rounds: 20\nrounds: 21").encode(),
                      "duplicate key 'rounds'"),
    "alias": (POLICY.replace("max_grad_norm: 0.1", "max_grad_norm: &clip 0.1")
              .replace("clipping_range: 8.0", "clipping_range: *clip").encode(), "anchors"),
    "utf-16": (POLICY.encode("utf-16"), "not UTF-8"),
    "yes-as-steps": (POLICY.replace("local_steps: 5 ", "local_steps: yes ").encode(),
                      "dp.local_steps"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_policy_file_is_one_line_naming_the_file(consortium, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        kind: str) -> None:
    data, problem = BROKEN[kind]
    assert data != POLICY.encode()  # the breakage was applied
    policy = tmp_path / f"{kind}.yaml"
    policy.write_bytes(data)
    _one_error_line(consortium("policy", "check", str(policy)), str(policy), problem)
    store = tmp_path / "runs.sqlite"
    _one_error_line(consortium("run", "--policy", str(policy), "--store", str(store)),
                    str(policy), problem)
    assert not store.exists()


def test_the_installed_entry_point_reports_a_broken_policy_the_same_way(tmp_path: Path) -> None:
    policy = tmp_path / "dup.yaml"
    policy.write_bytes(BROKEN["duplicate-key"][0])
    done = subprocess.run([sys.executable, "-m", "consortium", "policy", "check", str(policy)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"}, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    line = POLICY[:POLICY.index("rounds: 20")].count("\n") + 2  # the repeated key's line
    assert done.stderr.strip().splitlines() == [
        f"error: {policy}: not valid YAML: duplicate key 'rounds' (line {line}, column 1)"]
