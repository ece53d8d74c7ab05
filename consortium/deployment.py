"""Submitting a consortium run to a running SuperLink (Flower's Deployment Engine).

The run is submitted with Flower's CLI, ``flwr run APP_DIR CONNECTION``, from the consortium
home's ``FLWR_HOME`` (which holds the TLS connection to the SuperLink). The ServerApp runs in
the SuperLink's working directory, so every path in the run config is made absolute here; the
run lands in the same run store as a simulation run, marked ``engine = deployment``.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from consortium import processes, superlink
from consortium.home import ConsortiumHome

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("consortium", "site_node", "policies")
_STARTED = re.compile(r"Successfully started run (\d+)")
_LEGACY_TABLE = re.compile(r"^\[tool\.flwr\.federations(\.[^\]]*)?\]$")


class DeploymentError(Exception):
    """The run could not be submitted or did not finish."""


def app_config_keys() -> set[str]:
    """The run-config keys the Flower app declares (``[tool.flwr.app.config]``)."""
    data = tomllib.loads((APP_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["tool"]["flwr"]["app"].get("config", {}))


def run_config(
    store: Path, policy: Path | None, rounds: int | None, seed: int | None
) -> str:
    """The ``--run-config`` override string (absolute paths, TOML values).

    ``engine = 'deployment'`` tells the ServerApp not to enrol site keys itself (it cannot read
    the hospitals' disks); :func:`stage_app` declares the key if the project does not.
    """
    values = {"store": f"'{Path(store).resolve()}'", "engine": "'deployment'"}
    if policy is not None:
        values["policy"] = f"'{Path(policy).resolve()}'"
    if rounds:
        values["num-server-rounds"] = str(int(rounds))
    if seed is not None:
        values["seed"] = str(int(seed))
    return " ".join(f"{k}={v}" for k, v in values.items())


def stage_app(target: Path) -> Path:
    """Copy the Flower app (pyproject.toml and its packages) to ``target``; return it.

    ``flwr run`` rewrites a pyproject.toml that still has legacy ``[tool.flwr.federations]``
    tables (it migrates them into FLWR_HOME and comments them out), so the app is submitted from
    a staged copy without them; the copy also keeps the FAB to the code the nodes execute.
    """
    source = APP_DIR / "pyproject.toml"
    if not source.is_file():
        raise DeploymentError(f"the Flower app (pyproject.toml) is not at {APP_DIR}")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    kept, skipping = [], False
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            skipping = bool(_LEGACY_TABLE.match(line.strip()))
        if not skipping:
            kept.append(line)
    if "engine" not in app_config_keys():
        # Flower rejects run-config keys the app does not declare; the ServerApp reads `engine`.
        header = kept.index("[tool.flwr.app.config]")
        kept.insert(header + 1, 'engine = "simulation"')
    (target / "pyproject.toml").write_text("\n".join(kept) + "\n", encoding="utf-8")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.csv", "*.sqlite*")
    for package in APP_PACKAGES:
        shutil.copytree(APP_DIR / package, target / package, ignore=ignore)
    return target


def flwr_run_command(app_dir: Path, federation: str, config: str) -> list[str]:
    """The ``flwr run`` command line that submits the app to ``federation``."""
    return [
        processes.tool("flwr"), "run", str(app_dir), federation,
        "--run-config", config, "--stream",
    ]


def submit(
    home: ConsortiumHome,
    federation: str,
    config: str,
    on_line: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> str:
    """Submit the run and stream its log until it ends; returns the whole output.

    ``timeout_s`` bounds the log stream (``flwr run`` is killed after it).

    Raises
    ------
    DeploymentError
        If ``flwr run`` fails or reports an error.
    """
    env = processes.tool_env({"FLWR_HOME": str(home.flwr_home)})
    app_dir = stage_app(home.root / "app")
    argv = flwr_run_command(app_dir, federation, config)
    log.info("submitting: %s", " ".join(argv))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=app_dir
    )
    lines: list[str] = []
    watchdog = threading.Timer(timeout_s, proc.kill) if timeout_s else None
    if watchdog is not None:
        watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        rc = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    output = "".join(lines)
    started = _STARTED.search(output)
    if rc != 0 or started is None or "Exit Code:" in output:
        raise DeploymentError(f"`flwr run` failed (rc={rc}):\n{output[-2000:]}")
    status = wait_finished(home, federation, int(started.group(1)))
    if not status.endswith("completed"):
        raise DeploymentError(f"run {started.group(1)} ended as {status!r}:\n{output[-2000:]}")
    return output


def run_status(home: ConsortiumHome, federation: str, run_id: int) -> str:
    """The SuperLink's status of a run, e.g. ``running`` or ``finished:completed``."""
    reply = superlink.flwr_cli(home, "ls", "--run-id", str(run_id), connection=federation)
    runs = reply.get("runs")
    return str(runs[0]["status"]) if isinstance(runs, list) and runs else "unknown"


def wait_finished(
    home: ConsortiumHome, federation: str, run_id: int, timeout_s: float = 600.0
) -> str:
    """Wait until the SuperLink reports the run finished (the log stream can end earlier)."""
    deadline = time.monotonic() + timeout_s
    while not (status := run_status(home, federation, run_id)).startswith("finished"):
        if status == "unknown" or time.monotonic() > deadline:
            raise DeploymentError(f"run {run_id} still {status} after {timeout_s:.0f} s")
        time.sleep(2.0)
    return status
