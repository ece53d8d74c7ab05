"""Submitting a consortium run to a running SuperLink (Flower's Deployment Engine).

The run is submitted with Flower's CLI, ``flwr run APP_DIR CONNECTION --format json``, from the
consortium home's ``FLWR_HOME`` (which holds the TLS connection to the SuperLink); the run's
settings go in a TOML file passed as ``--run-config`` (written with ``tomli-w``), with absolute
paths because the ServerApp runs in the SuperLink's working directory. The consortium's run id
is chosen here and passed in, so that progress is followed in the run store, round by round,
while the SuperLink's status (``flwr ls --run-id``) says when the run has finished.

The app bundle is staged from the installation, never from a source checkout: its
``pyproject.toml`` is the package data ``flower-app.toml`` (beside this module) and its code the
installed ``consortium``, ``site_node`` and ``policies`` packages, wherever they were imported
from (site-packages after ``pip install .``, the checkout in development).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomli_w

from consortium.deployment import flower_runs, superlink
from consortium.deployment.setup import Deployment
from consortium.errors import DeploymentError, StoreError, SuperLinkError
from consortium.store.records import RUN_INTERRUPTED, RUN_RUNNING, RoundRecord, RunRecord
from consortium.store.run_store import RunStore
from site_node.deployment import processes
from site_node.protocol import run_config as keys

log = logging.getLogger(__name__)

APP_CONFIG = "flower-app.toml"  # package data: the Flower App's pyproject.toml
APP_PACKAGES = ("consortium", "site_node", "policies")
REPLY_RUN_ID = "run-id"  # the Flower run id in `flwr run --format json`'s reply


@dataclass(frozen=True)
class Submission:
    """A run submitted to the SuperLink."""

    run_id: str
    flower_run_id: int
    store: Path


def app_config_file() -> Path:
    """The installed Flower App configuration (package data of this package)."""
    return Path(str(resources.files(__package__ or "consortium.deployment") / APP_CONFIG))


def app_config_keys() -> set[str]:
    """The run-config keys the Flower app declares (``[tool.flwr.app.config]``)."""
    data = tomllib.loads(app_config_file().read_text(encoding="utf-8"))
    return set(data["tool"]["flwr"]["app"].get("config", {}))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DeploymentError(f"the Flower app's package {package} is not installed")
    return Path(spec.origin).parent


def run_config(store: Path, policy: Path | None, rounds: int | None, seed: int | None,
               run_id: str, task: Path | None = None) -> dict[str, object]:
    """The run's settings (absolute paths); never demonstration mode."""
    values: dict[str, object] = {keys.STORE: str(Path(store).resolve()), keys.RUN_ID: run_id,
                                 keys.DEMO: False}
    if policy is not None:
        values[keys.POLICY] = str(Path(policy).resolve())
    if task is not None:
        values[keys.TASK] = str(Path(task).resolve())
    if rounds:
        values[keys.NUM_SERVER_ROUNDS] = int(rounds)
    if seed is not None:
        values[keys.SEED] = int(seed)
    unknown = set(values) - app_config_keys()
    if unknown:
        raise DeploymentError(f"the Flower app does not declare run-config keys {unknown}")
    return values


def resume_config(store: Path, run_id: str | None) -> dict[str, object]:
    """The run config that continues an interrupted run (by default the latest such run): its
    id, store and ``resume``; its policy, task, rounds and seed are the stored run's. Checked
    here without writing anything; the ServerApp claims the run (or marks it abandoned).

    Raises
    ------
    PlanError
        If there is no such run, or it is finished, still running or a local-only run.
    """
    from consortium.run.resume import resumable  # the run package loads the accountant

    path = Path(store).resolve()
    values: dict[str, object] = {keys.STORE: str(path), keys.RUN_ID: resumable(path, run_id),
                                 keys.DEMO: False, keys.RESUME: True}
    unknown = set(values) - app_config_keys()
    if unknown:
        raise DeploymentError(f"the Flower app does not declare run-config keys {unknown}")
    return values


def stage_app(target: Path) -> Path:
    """Stage the Flower app in ``target`` (replaced): the packaged ``flower-app.toml`` as its
    ``pyproject.toml`` and the installed packages; return it.

    Raises
    ------
    DeploymentError
        If the installation lacks the app configuration or one of the packages.
    """
    config = app_config_file()
    if not config.is_file():
        raise DeploymentError(f"the Flower app configuration {config} is missing from the "
                              "installation; reinstall hospital-consortium")
    sources = {package: _package_dir(package) for package in APP_PACKAGES}
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(config, target / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite*")
    for package, source in sources.items():
        shutil.copytree(source, target / package, ignore=ignore)
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
    if done.returncode != 0 or not reply.get("success") or reply.get(REPLY_RUN_ID) is None:
        detail = reply.get("error-message") or (done.stderr or done.stdout).strip()[-2000:]
        raise DeploymentError(f"`flwr run` failed (rc={done.returncode}): {detail}")
    sub = Submission(run_id=str(config[keys.RUN_ID]), flower_run_id=int(reply[REPLY_RUN_ID]),
                     store=Path(str(config[keys.STORE])))
    flower_runs.record(dep, sub.run_id, sub.flower_run_id)
    return sub


def stop_earlier(dep: Deployment, federation: str, run_id: str) -> list[int]:
    """Before resuming ``run_id``: stop its earlier Flower runs the SuperLink still lists as
    unfinished (see :mod:`consortium.deployment.flower_runs`); the ids stopped."""
    return flower_runs.stop_unfinished(dep, federation, run_id,
                                       lambda flower_run_id: run_status(dep, federation,
                                                                        flower_run_id))


def run_status(dep: Deployment, federation: str, flower_run_id: int) -> str:
    """The SuperLink's status of a run, e.g. ``running`` or ``finished:completed``."""
    reply = superlink.flwr_cli(dep, "ls", "--run-id", str(flower_run_id), connection=federation)
    runs = reply.get("runs")
    return str(runs[0]["status"]) if isinstance(runs, list) and runs else "unknown"


def _recorded(store: Path, run_id: str) -> tuple[RunRecord | None, list[RoundRecord]]:
    try:
        with RunStore(store, readonly=True) as rs:
            return rs.get_run(run_id), rs.rounds(run_id)
    except StoreError:
        return None, []


def recorded_rounds(store: Path, run_id: str) -> int:
    """How many rounds of ``run_id`` the store holds (0 if none, or no such run)."""
    return len(_recorded(store, run_id)[1])


def _interrupted(run: RunRecord) -> DeploymentError:
    return DeploymentError(
        f"run {run.run_id} was interrupted: {run.stop_reason}. Its recorded rounds stay; once "
        f"the SuperLink is back, continue it with `consortium submit --resume --run "
        f"{run.run_id}` (no site is charged twice for a round)")


#: How often :func:`follow` asks the SuperLink for a run's status while the store shows it
#: running.
STATUS_EVERY_S = 10.0


def follow(dep: Deployment, federation: str, sub: Submission, *,
           on_round: Callable[[RoundRecord], None] | None = None,
           timeout_s: float = 3600.0, poll_s: float = 1.0, lost_s: float = 120.0,
           already: int = 0, status_s: float = STATUS_EVERY_S) -> str:
    """Report each round as the store records it, until the SuperLink says the run finished.

    The store is read every ``poll_s``; the SuperLink is asked (``flwr ls``, a process that
    costs about a second of CPU on the coordinator's machine, where the run's ServerApp is
    working) every ``status_s``, and at once when the store shows the run no longer running.

    Raises
    ------
    DeploymentError
        If the run does not finish in ``timeout_s``, ends other than completed, or the SuperLink
        is lost (the run is then recorded as interrupted; the message says how to resume it, or
        after ``lost_s`` without it, what the store says). ``already``: rounds recorded before
        (a resumed run's), not reported again.
    """
    deadline = time.monotonic() + timeout_s
    seen, lost_since, status, asked, ended = already, None, "", -math.inf, False
    while True:
        # the SuperLink first, then the store: a run it calls finished has all its rounds read
        if ended or time.monotonic() - asked >= status_s:
            asked = time.monotonic()
            try:
                status = run_status(dep, federation, sub.flower_run_id)
                lost_since = None
            except SuperLinkError:
                status, lost_since = "lost", lost_since or time.monotonic()
        run, rounds = _recorded(sub.store, sub.run_id)
        ended = run is not None and run.status != RUN_RUNNING
        for rec in rounds[seen:]:
            if on_round is not None:
                on_round(rec)
        seen = len(rounds)
        if status.startswith("finished"):
            break
        if run is not None and run.status == RUN_INTERRUPTED and status in ("lost", "unknown"):
            raise _interrupted(run)
        if lost_since is not None and time.monotonic() - lost_since > lost_s:
            raise DeploymentError(f"lost the SuperLink for {lost_s:.0f} s; run {sub.run_id} "
                                  f"is {run.status if run else 'not recorded'} in {sub.store}")
        if status == "unknown" or time.monotonic() > deadline:
            raise DeploymentError(f"run {sub.flower_run_id} still {status} after "
                                  f"{timeout_s:.0f} s")
        time.sleep(poll_s)
    if not status.endswith("completed"):
        if run is not None and run.status == RUN_INTERRUPTED:
            raise _interrupted(run)
        raise DeploymentError(f"run {sub.flower_run_id} ended as {status!r}; see "
                              f"`flwr log {sub.flower_run_id}` and the run store {sub.store}")
    return status


def new_run_id() -> str:
    """A fresh consortium run id."""
    return str(uuid.uuid4())
