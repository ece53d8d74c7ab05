"""A node that claims another member's identity, in a real run on Flower's simulation engine:
its reply is rejected, logged as a security event, and the round fails (no new global model).

Node 0 trains honestly as cleveland (real DP-SGD, a receipt signed by cleveland's key) but
claims to be hungary; the other nodes are the real demonstration sites, hungary included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.audit.log import AuditLog
from consortium.audit.verify import verify_store
from consortium.errors import SecurityEventsFound
from consortium.store.records import ROUND_FAILED, RUN_FAILED
from consortium.store.run_store import RunStore
from tests.consortium.simulated import SimulatedRun, run_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory) -> SimulatedRun:
    return run_in_process(tmp_path_factory.mktemp("impostor"), rounds=1, liar="hungary")


def test_the_round_fails_and_no_model_is_adopted(impostor: SimulatedRun) -> None:
    assert impostor.outcome["status"] == RUN_FAILED
    assert impostor.outcome["reason"] == "no round completed"
    with RunStore(impostor.store, readonly=True) as rs:
        run_id = rs.latest_run_id()
        (rnd,) = rs.rounds(run_id)
        assert rnd.status == ROUND_FAILED
        assert rnd.failure_reason is not None and rnd.failure_reason.startswith(
            "reply rejected: ")
        assert "'hungary'" in rnd.failure_reason
        assert rs.db.query("SELECT COUNT(*) AS n FROM checkpoints")[0]["n"] == 0
        assert rs.get_run(run_id).status == RUN_FAILED


def test_the_rejection_is_a_security_event(impostor: SimulatedRun) -> None:
    with RunStore(impostor.store, readonly=True) as rs:
        entries = AuditLog(rs.db).entries()
    security = [e.payload for e in entries if e.kind == "security"]
    assert security and all(p["round"] == 1 for p in security)
    assert any(p["claimed_site"] == "hungary" for p in security)
    (failed,) = [e.payload for e in entries if e.kind == "round-failed"]
    assert failed["rejected"] == len(security)
    # A node is bound to a site once an answer of it is accepted: its honest preflight answer
    # bound node 0 to cleveland, so the liar alone is rejected (for claiming hungary, or, had
    # it not answered the preflight, as a second claim of hungary or for its cleveland
    # receipt) and the real hungary's receipt is accepted.
    (event,) = security
    assert ("is enrolled as site 'cleveland' but its reply claims 'hungary'" in event["reason"]
            or "already speaks for" in event["reason"]
            or "receipt names (site, run, round, policy, task, examples) ('cleveland'"
            in event["reason"])
    assert "hungary" in failed["sites_with_receipt"]


def test_verification_names_the_security_event(impostor: SimulatedRun) -> None:
    with pytest.raises(SecurityEventsFound, match=r"security event\(s\): seq=\d+ .*hungary"):
        verify_store(impostor.store)


def test_the_liars_receipt_is_not_stored_the_honest_ones_are(impostor: SimulatedRun) -> None:
    """The honest members' receipts are kept (they spent budget); a rejected reply's is not."""
    with RunStore(impostor.store, readonly=True) as rs:
        stored = {r.site for r in AuditLog(rs.db).receipts()}
    assert "cleveland" not in stored
    assert {"long_beach", "switzerland"} <= stored


def test_no_site_key_outside_the_demonstration_homes(impostor: SimulatedRun) -> None:
    keys = sorted(Path(impostor.site_home).rglob("receipt-key.pem"))
    assert [k.parent.parent.name for k in keys] == sorted(
        ["cleveland", "hungary", "long_beach", "switzerland"])
    assert all(k.parent.parent.parent.name == "demo" for k in keys)
