"""Submitting a consortium run to a running SuperLink (Flower's Deployment Engine).

The run is submitted with Flower's CLI, ``flwr run APP_DIR CONNECTION --format json``, from the
consortium home's ``FLWR_HOME`` (which holds the TLS connection to the SuperLink); the run's
settings go in a TOML file passed as ``--run-config`` (written with ``tomli-w``), with absolute
paths because the ServerApp runs in the SuperLink's working directory. The consortium's run id
is chosen here and passed in, so that progress is followed in the run store, round by round,
while the SuperLink's status (``flwr ls --run-id``) says when the run has finished.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from consortium.deployment import superlink
from consortium.deployment.setup import Deployment
from consortium.errors import DeploymentError, StoreError
from consortium.store.records import RoundRecord
from consortium.store.run_store import RunStore
from site_node.deployment import processes

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("consortium", "site_node", "policies")


@dataclass(frozen=True)
class Submission:
    """A run submitted to the SuperLink."""

    run_id: str
    flower_run_id: int
    store: Path


def app_config_keys() -> set[str]:
    """The run-config keys the Flower app declares (``[tool.flwr.app.config]``)."""
    data = tomllib.loads((APP_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["tool"]["flwr"]["app"].get("config", {}))


def run_config(store: Path, policy: Path | None, rounds: int | None, seed: int | None,
               run_id: str, task: Path | None = None) -> dict[str, object]:
    """The run's settings (absolute paths); never demonstration mode."""
    values: dict[str, object] = {"store": str(Path(store).resolve()), "run-id": run_id,
                                 "demo": False}
    if policy is not None:
        values["policy"] = str(Path(policy).resolve())
    if task is not None:
        values["task"] = str(Path(task).resolve())
    if rounds:
        values["num-server-rounds"] = int(rounds)
    if seed is not None:
        values["seed"] = int(seed)
    unknown = set(values) - app_config_keys()
    if unknown:
        raise DeploymentError(f"the Flower app does not declare run-config keys {unknown}")
    return values


def stage_app(target: Path) -> Path:
    """Copy the Flower app (pyproject.toml and its packages) to ``target``; return it."""
    source = APP_DIR / "pyproject.toml"
    if not source.is_file():
        raise DeploymentError(f"the Flower app (pyproject.toml) is not at {APP_DIR}; submit "
                              "from a source checkout or an editable install")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(source, target / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite*")
    for package in APP_PACKAGES:
        shutil.copytree(APP_DIR / package, target / package, ignore=ignore)
    return target


def submit(dep: Deployment, federation: str, config: dict[str, object]) -> Submission:
    """Start the run on the SuperLink; returns its ids (it runs on there)."""
    env = processes.tool_env({"FLWR_HOME": str(dep.home.flwr_home)})
    app_dir = stage_app(dep.home.root / "app")
    config_file = dep.home.root / "run-config.toml"
    config_file.write_text(tomli_w.dumps(config), encoding="utf-8")
    argv = [processes.tool("flwr"), "run", str(app_dir), federation, "--run-config",
            str(config_file), "--format", "json"]
    log.info("submitting: %s", " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=app_dir,
                          timeout=300)
    try:
        reply = json.loads(done.stdout[done.stdout.find("{"):])
    except ValueError:
        reply = {}
    if done.returncode != 0 or not reply.get("success") or reply.get("run-id") is None:
        detail = reply.get("error-message") or (done.stderr or done.stdout).strip()[-2000:]
        raise DeploymentError(f"`flwr run` failed (rc={done.returncode}): {detail}")
    return Submission(run_id=str(config["run-id"]), flower_run_id=int(reply["run-id"]),
                      store=Path(str(config["store"])))


def run_status(dep: Deployment, federation: str, flower_run_id: int) -> str:
    """The SuperLink's status of a run, e.g. ``running`` or ``finished:completed``."""
    reply = superlink.flwr_cli(dep, "ls", "--run-id", str(flower_run_id), connection=federation)
    runs = reply.get("runs")
    return str(runs[0]["status"]) if isinstance(runs, list) and runs else "unknown"


def _recorded(store: Path, run_id: str) -> list[RoundRecord]:
    try:
        with RunStore(store, readonly=True) as rs:
            return rs.rounds(run_id)
    except StoreError:
        return []


def follow(dep: Deployment, federation: str, sub: Submission, *,
           on_round: Callable[[RoundRecord], None] | None = None,
           timeout_s: float = 3600.0, poll_s: float = 1.0) -> str:
    """Report each round as the store records it, until the SuperLink says the run finished.

    Raises
    ------
    DeploymentError
        If the run does not finish in ``timeout_s`` or ends other than completed.
    """
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        status = run_status(dep, federation, sub.flower_run_id)
        rounds = _recorded(sub.store, sub.run_id)
        for rec in rounds[seen:]:
            if on_round is not None:
                on_round(rec)
        seen = len(rounds)
        if status.startswith("finished"):
            break
        if status == "unknown" or time.monotonic() > deadline:
            raise DeploymentError(f"run {sub.flower_run_id} still {status} after "
                                  f"{timeout_s:.0f} s")
        time.sleep(poll_s)
    if not status.endswith("completed"):
        raise DeploymentError(f"run {sub.flower_run_id} ended as {status!r}; see "
                              f"`flwr log {sub.flower_run_id}` and the run store {sub.store}")
    return status


def new_run_id() -> str:
    """A fresh consortium run id."""
    return str(uuid.uuid4())
