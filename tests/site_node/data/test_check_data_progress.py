"""``site-node check-data`` shows progress on stderr while it checks a table (a bar on a
terminal, a log line every few seconds otherwise) and prints the same report as before."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console

from site_node.cli import data_progress
from site_node.cli import main as site_main
from site_node.data.table_check import Progress
from tests.cli.invoke import invoke
from tests.site_node.data.synthetic import table, write_table, write_task


def test_a_terminal_gets_a_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with data_progress.data_progress(console) as show:
        show(Progress(20_000, 0.25))
        show(Progress(40_000, 0.5))
    assert "40,000 rows" in out.getvalue()


def test_a_pipe_gets_a_log_line_every_few_seconds(caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with caplog.at_level(logging.INFO), data_progress.data_progress(console) as show:
        show(Progress(10, 0.1))  # before the first interval: nothing
        monkeypatch.setattr(data_progress, "INTERVAL_S", 0.0)
        show(Progress(20_000, 0.5))
        show(Progress(30_000, None))
    assert [r.getMessage() for r in caplog.records] == [
        "checked 20,000 rows (50% of the file)", "checked 30,000 rows"]


def test_check_data_reports_progress_and_the_same_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(data_progress, "INTERVAL_S", 0.0)
    data = write_table(tmp_path / "site.csv", table(60))
    args = ["check-data", "--task", str(write_task(tmp_path)), "--data", str(data), "--json"]
    with caplog.at_level(logging.INFO):
        got = invoke(site_main, "site-node", args, capsys, monkeypatch)
    assert got.code == 0, got.output
    result = json.loads(got.out)
    assert result["ok"] and result["summary"]["rows"] == 60
    assert "checked 60 rows (100% of the file)" in [r.getMessage() for r in caplog.records]
