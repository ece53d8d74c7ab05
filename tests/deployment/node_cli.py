"""``site-node`` run in-process for the deployment command tests, and the task they start on."""

from __future__ import annotations

from pathlib import Path

import pytest

from site_node.cli import main as site_main
from tests.cli.invoke import Outcome, invoke

TASK = Path(__file__).resolve().parents[2] / "policies" / "tasks" / "heart-disease.yaml"


def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              *args: str) -> Outcome:
    """``site-node ARGS`` in this process: its exit code and output."""
    return invoke(site_main, "site-node", list(args), capsys, monkeypatch)
