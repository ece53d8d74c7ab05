"""Start the dashboard as a Streamlit server: what ``consortium dashboard`` runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "app.py"


def command(store: Path, port: int = 8501, host: str = "127.0.0.1",
            headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line that serves the dashboard.

    Parameters
    ----------
    store : Path
        The run store to read (passed to the app as ``-- --store PATH``).
    port : int
        TCP port to listen on.
    host : str
        Address to bind; the default serves this machine only.
    headless : bool
        Do not open a browser.

    Returns
    -------
    list of str
        Arguments for :func:`subprocess.run`, starting with this Python interpreter.
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--", "--store", str(Path(store).expanduser()),
    ]


def launch(store: Path, port: int = 8501, host: str = "127.0.0.1", headless: bool = True) -> int:
    """Serve the dashboard until it stops (Ctrl+C), and return Streamlit's exit code.

    Parameters
    ----------
    store, port, host, headless
        As for :func:`command`.

    Returns
    -------
    int
        The exit code of the Streamlit process (0 after an interrupt).
    """
    argv = command(store, port, host, headless)
    log.info("dashboard on http://%s:%d reading %s", host, port, store)
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:
        return 0
