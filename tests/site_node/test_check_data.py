"""``site-node check-data --policy``: what the consortium policy implies for the site's data
(training examples vs secagg.max_weight, expected batch q·N >= 1), checked before any run, with
the real command, task, policy and data files; without --policy it says those checks were not
made."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from policies.loader import default_policy_path
from site_node.cli import app
from tests.site_node.data.synthetic import table, write_table, write_task


def _policy(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = default_policy_path().read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _check(tmp_path: Path, rows: int, *options: str) -> tuple[int, dict[str, object]]:
    task = write_task(tmp_path)
    data = write_table(tmp_path / "site.csv", table(rows, seed=5))
    done = CliRunner().invoke(app, ["check-data", "--task", str(task), "--data", str(data),
                                    "--json", *options])
    return done.exit_code, json.loads(done.stdout)


def test_more_training_rows_than_max_weight_do_not_fit_the_policy(tmp_path: Path) -> None:
    """The issue's case: 1400 rows, 1050 of them for training, secagg.max_weight 1000."""
    policy = _policy(tmp_path)
    code, out = _check(tmp_path, 1400, "--policy", str(policy))
    assert code == 2 and out["ok"] is False
    (problem,) = out["report"]["problems"]  # type: ignore[index]
    assert "1050 training examples exceed secagg.max_weight 1000" in problem
    assert out["policy_checks"] == "made"


def test_the_sampling_rate_needs_an_expected_batch_of_one(tmp_path: Path) -> None:
    policy = _policy(tmp_path, ("sample_rate: 0.5 ", "sample_rate: 0.001 "))
    code, out = _check(tmp_path, 200, "--policy", str(policy))
    assert code == 2
    (problem,) = out["report"]["problems"]  # type: ignore[index]
    assert "expected batch of 0.15 < 1" in problem


def test_data_within_the_policy_fit(tmp_path: Path) -> None:
    code, out = _check(tmp_path, 200, "--policy", str(_policy(tmp_path)))
    assert code == 0 and out["ok"] is True and "report" not in out


def test_without_a_policy_the_policy_checks_are_said_not_made(tmp_path: Path) -> None:
    code, out = _check(tmp_path, 1400)
    assert code == 0 and out["ok"] is True
    assert str(out["policy_checks"]).startswith("not checked (no --policy)")
    assert "secagg.max_weight" in str(out["policy_checks"])
    task = write_task(tmp_path)
    data = tmp_path / "site.csv"
    text = CliRunner().invoke(app, ["check-data", "--task", str(task), "--data", str(data)])
    assert "Policy limits not checked (no --policy)" in text.stdout
