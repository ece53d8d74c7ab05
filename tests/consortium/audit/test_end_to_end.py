"""End to end: the local demonstration (2 rounds, 4 sites) on Flower's simulation engine with
real DP-SGD and real SecAgg+, then its audit trail: verified, tamper-evident, reported."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from consortium.audit.head import head_path
from consortium.audit.log import AuditLog
from consortium.audit.report import build_report, write_report
from consortium.audit.verify import verify_store
from consortium.errors import AuditVerificationError, HeadMissing, SecurityEventsFound
from consortium.store.records import MODE_DEMO, RUN_COMPLETED
from consortium.store.run_store import RunStore
from site_node.protocol.keys import fingerprint, load_public_key_file
from tests.consortium.simulated import SimulatedRun, run_in_process

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "long_beach", "switzerland")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> SimulatedRun:
    return run_in_process(tmp_path_factory.mktemp("e2e"), rounds=2)


def test_the_run_completes_and_every_site_and_round_has_a_verified_receipt(
    simulated: SimulatedRun
) -> None:
    assert simulated.outcome["status"] == RUN_COMPLETED and simulated.outcome["rounds_ok"] == 2
    with RunStore(simulated.store, readonly=True) as rs:
        log = AuditLog(rs.db)
        got = {(r.site, r.round) for r in log.receipts()}
        assert not [e for e in log.entries() if e.kind == "security"]
    assert got == {(s, r) for s in SITES for r in (1, 2)}
    result = verify_store(simulated.store)
    assert len(result.checks) == 8 and result.security_events == []
    for c in result.checks:
        assert c.claimed <= c.ceiling


def test_the_demo_run_and_every_enrolment_it_made_say_local_demo(
    simulated: SimulatedRun
) -> None:
    with RunStore(simulated.store, readonly=True) as rs:
        run = rs.get_run(rs.latest_run_id())
        entries = AuditLog(rs.db).entries()
    assert run.mode == MODE_DEMO
    (start,) = [e.payload for e in entries if e.kind == "run-start"]
    assert start["mode"] == MODE_DEMO
    sites = [e.payload for e in entries
             if e.kind == "enrolment" and e.payload.get("role") == "site"]
    assert sorted(p["subject"] for p in sites) == list(SITES)
    assert {p["mode"] for p in sites} == {MODE_DEMO}
    # each enrolled key is the one the demonstration site holds in its own home
    for p in sites:
        pub = simulated.site_home / "demo" / p["subject"] / "state" / "receipt-key.pub.pem"
        assert fingerprint(load_public_key_file(pub)) == p["fingerprint"]
    assert verify_store(simulated.store).modes == {run.run_id: MODE_DEMO}


def test_the_store_is_private(simulated: SimulatedRun) -> None:
    assert stat.S_IMODE(simulated.store.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(simulated.store.stat().st_mode) == 0o600


def test_one_changed_byte_fails_verification(simulated: SimulatedRun, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    shutil.copy(simulated.store, copy)
    shutil.copy(head_path(simulated.store), head_path(copy))  # its signed head too
    data = bytearray(copy.read_bytes())
    at = data.index(b'"epsilon":') + len(b'"epsilon":') + 2  # a digit of a receipt's ε
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    copy.write_bytes(bytes(data))
    with pytest.raises(AuditVerificationError) as err:
        verify_store(copy)
    assert not isinstance(err.value, SecurityEventsFound | HeadMissing)


def test_report_opens_and_shows_every_site_and_round(simulated: SimulatedRun,
                                                     tmp_path: Path) -> None:
    html_path, json_path = write_report(build_report(simulated.store), tmp_path)
    text, data = html_path.read_text(), json.loads(json_path.read_text())
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert data["verification"]["ok"] is True
    assert {(r["site"], r["round"]) for r in data["receipts"]} == {
        (s, r) for s in SITES for r in (1, 2)}
    assert [r["status"] for r in data["rounds"]] == ["ok", "ok"]
    for site in SITES:
        assert site in text
    assert "Local demonstration." in text and data["run"]["local_demo"] is True
