"""``consortium dashboard``: a busy port is refused before anything is announced or started,
naming ``--port``; the coordinator's view has no Streamlit developer chrome."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from streamlit import config as streamlit_config

from consortium.cli import main as consortium_main
from consortium.cli.run import streamlit_command
from tests.cli.invoke import invoke


def test_a_busy_port_is_refused_naming_port_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = invoke(consortium_main, "consortium",
                      ["dashboard", "--store", str(tmp_path / "runs.sqlite"), "--port",
                       str(port)], capsys, monkeypatch)
    assert done.code == 2, done.output
    assert "--port" in done.err and f"127.0.0.1:{port} is already in use" in done.err
    assert "Dashboard on" not in done.out
    assert started == []


def test_the_dashboard_has_no_developer_toolbar(tmp_path: Path) -> None:
    argv = streamlit_command(tmp_path / "runs.sqlite", 8501, "127.0.0.1")
    assert argv[argv.index("--client.toolbarMode") + 1] == "viewer"
    # Every option given is one this Streamlit knows (an unknown one is silently ignored).
    for flag in (a for a in argv[:argv.index("--")] if a.startswith("--")):
        streamlit_config.get_option(flag.removeprefix("--"))
