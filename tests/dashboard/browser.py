"""Serving the dashboard for a real browser: ``streamlit run`` in a subprocess on a free local
port, and Debian's chromium (driven by Playwright) with the flags that keep it quiet."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consortium.cli.run import streamlit_command

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
CHROMIUM_MISSING = ("needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install -y chromium)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(store: Path, logdir: Path) -> Iterator[str]:
    """The dashboard on ``store``, served on a free local port; yields its URL and always
    stops the server afterwards (its output goes to ``logdir/streamlit.log``)."""
    port = free_port()
    logpath = logdir / "streamlit.log"
    env = {**os.environ, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    with logpath.open("w") as logfile:
        proc = subprocess.Popen(streamlit_command(store, port, "127.0.0.1"), cwd=ROOT,
                                env=env, stdout=logfile, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, logpath)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], logpath: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("dashboard did not start:\n" + logpath.read_text())
        time.sleep(0.2)
