"""``consortium dashboard`` serves Streamlit and takes it down with it on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from site_node.deployment.processes import free_port

pytestmark = pytest.mark.slow


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _streamlit_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True)
            if "streamlit" in " ".join(p.cmdline())]


def test_sigterm_stops_the_streamlit_server_too(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "consortium", "dashboard", "--store",
         str(tmp_path / "runs.sqlite"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _healthy(url):
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "the dashboard never became healthy"
            time.sleep(0.3)
        children = _streamlit_children(proc.pid)
        assert len(children) == 1, [c.cmdline() for c in children]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
        assert not _healthy(url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in children:
            if child.is_running():
                child.kill()
        log.close()
