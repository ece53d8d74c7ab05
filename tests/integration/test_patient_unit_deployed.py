"""Patient-level DP in the deployed mode: real SuperLink and SuperNodes on the heart-visits
example (a patient column, the unit ``patient``), one round under SecAgg+ over TLS.

Every site's signed receipt and ledger event must say what its ε protects (a patient), the
preflight and the round must admit the unit, and ``audit verify`` must re-account every ε with
the patient sampling rate and accept the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing

import pytest

from consortium.audit.log import AuditLog
from consortium.deployment.local import LocalDeployment
from consortium.store.database import Database
from consortium.store.records import ROUND_OK, RUN_COMPLETED
from consortium.store.run_store import RunStore
from policies.task_loader import load_task
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger

pytestmark = pytest.mark.slow
EXAMPLE = "heart-visits"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDeployment, str]]:
    """The heart-visits example deployed, one round run; every process stopped at the end."""
    with LocalDeployment(tmp_path_factory.mktemp("patients"), example=EXAMPLE) as dep:
        sub = dep.up().run(rounds=1)
        yield dep, sub.run_id


def test_the_example_is_patient_level(ran: tuple[LocalDeployment, str]) -> None:
    dep, _ = ran
    assert load_task(dep.dep.home.task).task.privacy_unit.unit == "patient"


def test_a_deployed_round_trains_patient_level_dp(ran: tuple[LocalDeployment, str]) -> None:
    dep, run_id = ran
    with RunStore(dep.store, readonly=True) as store:
        run, rounds = store.get_run(run_id), store.rounds(run_id)
    assert run.status == RUN_COMPLETED
    assert [r.status for r in rounds] == [ROUND_OK], [r.failure_reason for r in rounds]
    assert sorted(s.site for s in rounds[0].sites) == sorted(dep.sites)
    assert all(s.trained and s.epsilon is not None and s.epsilon > 0 for s in rounds[0].sites)
    with closing(Database(dep.store, readonly=True)) as db:
        receipts = AuditLog(db).receipts(run_id)
    assert len(receipts) == len(dep.sites)
    for r in receipts:
        signed = json.loads(r.receipt_json)
        assert signed["privacy_unit"] == "patient", signed
    for site, home in dep.site_homes.items():
        with SiteLedger(home.state_dir / LEDGER_FILE, readonly=True) as ledger:
            units = {e.mechanism.unit for e in ledger.events()}
        assert units == {"patient"}, site


def test_audit_verify_reaccounts_patient_level_receipts(ran: tuple[LocalDeployment, str]
                                                        ) -> None:
    dep, _ = ran
    done = subprocess.run([sys.executable, "-m", "consortium", "audit", "verify", "--store",
                           str(dep.store)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout
