"""Restarts during a deployed run, with real processes: a SuperLink (TLS, node authentication)
and four SuperNodes on 127.0.0.1.

- The SuperLink is stopped after the run's first round: the ServerApp under it ends, the run is
  recorded ``interrupted`` with the reason (signed), and the coordinator's follower says how to
  resume. The SuperLink comes back (its node registrations kept), the SuperNodes reconnect, and
  ``consortium submit --resume`` continues the run to its last round: every round recorded once,
  every site charged once per round (its ledger) with one receipt per round, and
  ``consortium audit verify`` accepts the store; a second resume of the finished run is refused.
- A SuperNode is stopped during a round and started again: the round it missed fails cleanly (the
  policy needs all four sites) or survives, no site is charged twice, and the run goes on with
  the node back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from consortium.audit.log import AuditLog
from consortium.deployment import submit
from consortium.deployment.local import LocalDeployment
from consortium.errors import DeploymentError
from consortium.run.workflow import FLOWER_EXIT, SIGNAL_STOP
from consortium.store.database import Database
from consortium.store.records import ROUND_OK, RUN_COMPLETED, RUN_INTERRUPTED, RunRecord
from consortium.store.run_store import RunStore
from site_node.deployment import processes
from site_node.privacy.ledger import SiteLedger

pytestmark = pytest.mark.slow

ROUNDS = 3
#: The SuperLink restart's run: round 1 before the restart, round 2 after the resume.
RESTART_ROUNDS = 2


def consortium(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``consortium`` command line, as a coordinator types it."""
    return subprocess.run([sys.executable, "-m", "consortium", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
                          check=False)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def stored(store: Path, run_id: str) -> tuple[RunRecord | None, list[int]]:
    try:
        with RunStore(store, readonly=True) as rs:
            return rs.get_run(run_id), [r.round for r in rs.rounds(run_id)]
    except Exception:  # not written yet
        return None, []


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    with LocalDeployment(tmp_path_factory.mktemp("restarts")) as dep:  # all stopped at the end
        yield dep.up()


def start_run(dep: LocalDeployment, rounds: int = ROUNDS) -> submit.Submission:
    config = submit.run_config(dep.store, dep.dep.home.policy, rounds, 0, submit.new_run_id(),
                               task=dep.dep.home.task)
    return submit.submit(dep.dep, dep.dep.federation, config)


def charged_once(dep: LocalDeployment, run_id: str, rounds: list[int]) -> None:
    """Every site's ledger holds exactly one event per trained round of the run, and the
    consortium one receipt per site per round."""
    for site, home in dep.site_homes.items():
        ledger = SiteLedger.in_state_dir(home.state_dir, readonly=True)
        try:
            spent = Counter(e.round for e in ledger.events(run_id))
        finally:
            ledger.close()
        assert all(n == 1 for n in spent.values()), (site, spent)
        assert set(rounds) <= set(spent), (site, spent, rounds)
    with closing(Database(dep.store, readonly=True)) as db:
        receipts = Counter((r.site, r.round) for r in AuditLog(db).receipts(run_id))
    assert all(n == 1 for n in receipts.values()), receipts


def test_a_superlink_restart_interrupts_the_run_and_submit_resume_finishes_it(
        deployed: LocalDeployment) -> None:
    sub = start_run(deployed, RESTART_ROUNDS)
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            submit.follow(deployed.dep, deployed.dep.federation, sub, lost_s=240)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    wait_for("round 1", lambda: 1 in stored(deployed.store, sub.run_id)[1])
    assert deployed.link is not None
    processes.stop(deployed.link)
    deployed.link = None
    wait_for("the run to be recorded interrupted",
             lambda: getattr(stored(deployed.store, sub.run_id)[0], "status", None)
             == RUN_INTERRUPTED, timeout=120)
    follower.join(timeout=240)
    run, before = stored(deployed.store, sub.run_id)
    assert run is not None and run.stop_reason is not None
    # Flower's exit, or the signal the ServerApp's process got first: either way, said
    assert run.stop_reason.startswith((FLOWER_EXIT.split("{")[0], SIGNAL_STOP.split("(")[0])), \
        run.stop_reason
    assert len(errors) == 1 and isinstance(errors[0], DeploymentError)
    assert f"consortium submit --resume --run {sub.run_id}" in str(errors[0])

    deployed.serve()  # the same home: TLS identity and node registrations kept
    home = str(deployed.dep.home.root)
    done = consortium("submit", "--home", home, "--resume", "--run", sub.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Resumed run {sub.run_id} after round {len(before)}" in done.stdout
    # the interrupted Flower run, still listed as running after the restart, was stopped first
    assert f"Stopped Flower run {sub.flower_run_id}" in done.stdout, done.stdout
    run, rounds = stored(deployed.store, sub.run_id)
    assert run is not None and run.status == RUN_COMPLETED
    assert rounds == list(range(1, RESTART_ROUNDS + 1))
    with RunStore(deployed.store, readonly=True) as rs:
        assert all(r.status == ROUND_OK for r in rs.rounds(sub.run_id))
    charged_once(deployed, sub.run_id, rounds)
    verified = consortium("audit", "verify", "--store", str(deployed.store))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = consortium("submit", "--home", home, "--resume", "--run", sub.run_id)
    assert again.returncode == 2 and "cannot be resumed" in again.stderr, again.stderr


def test_resume_refuses_changed_settings(deployed: LocalDeployment) -> None:
    home = str(deployed.dep.home.root)
    done = consortium("submit", "--home", home, "--resume", "--rounds", "5")
    assert done.returncode == 2 and "drop --rounds" in done.stderr, done.stderr


def test_a_supernode_restart_is_a_dropout_the_run_survives(deployed: LocalDeployment) -> None:
    if deployed.link is None:
        deployed.serve()
    sub = start_run(deployed)
    wait_for("round 1", lambda: 1 in stored(deployed.store, sub.run_id)[1])
    deployed.stop_node("hungary")
    deployed.start_node("hungary")
    submit.follow(deployed.dep, deployed.dep.federation, sub, timeout_s=600)
    run, rounds = stored(deployed.store, sub.run_id)
    assert run is not None and run.status == RUN_COMPLETED, run
    assert rounds == list(range(1, ROUNDS + 1))
    with RunStore(deployed.store, readonly=True) as rs:
        records = rs.rounds(sub.run_id)
    assert records[-1].status == ROUND_OK  # the node is back for the last round
    for rec in records:
        assert rec.status == ROUND_OK or rec.failure_reason, rec  # failed rounds say why
    charged_once(deployed, sub.run_id, [r.round for r in records if r.status == ROUND_OK])
