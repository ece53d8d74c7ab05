"""Submitting a consortium run to a running SuperLink (Flower's Deployment Engine).

The run is submitted with Flower's CLI, ``flwr run APP_DIR CONNECTION``, from the consortium
home's ``FLWR_HOME`` (which holds the TLS connection to the SuperLink). The ServerApp runs in
the SuperLink's working directory, so every path in the run config is made absolute here; the
run lands in the same run store as a simulation run, marked ``engine = deployment``.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

from consortium import processes
from consortium.home import ConsortiumHome

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1]


class DeploymentError(Exception):
    """The run could not be submitted or did not finish."""


def run_config(
    store: Path, policy: Path | None, rounds: int | None, seed: int | None
) -> str:
    """The ``--run-config`` override string (absolute paths, TOML values)."""
    values: dict[str, str] = {"store": f"'{Path(store).resolve()}'", "engine": "'deployment'"}
    if policy is not None:
        values["policy"] = f"'{Path(policy).resolve()}'"
    if rounds:
        values["num-server-rounds"] = str(int(rounds))
    if seed is not None:
        values["seed"] = str(int(seed))
    return " ".join(f"{k}={v}" for k, v in values.items())


def flwr_run_command(home: ConsortiumHome, federation: str, config: str) -> list[str]:
    """The ``flwr run`` command line that submits the app to ``federation``."""
    if not (APP_DIR / "pyproject.toml").is_file():
        raise DeploymentError(
            f"the Flower app (pyproject.toml) is not at {APP_DIR}; run from a source checkout"
        )
    return [
        processes.tool("flwr"), "run", str(APP_DIR), federation,
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

    Raises
    ------
    DeploymentError
        If ``flwr run`` fails or reports an error.
    """
    env = processes.tool_env({"FLWR_HOME": str(home.flwr_home)})
    argv = flwr_run_command(home, federation, config)
    log.info("submitting: %s", " ".join(argv))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=APP_DIR
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))
    rc = proc.wait(timeout=timeout_s)
    output = "".join(lines)
    if rc != 0 or "Exit Code:" in output or "unavailable" in output.lower():
        raise DeploymentError(f"`flwr run` failed (rc={rc}):\n{output[-2000:]}")
    return output
