"""The site key registry, replayed from the signed log: enrolment, rotation, revocation, and
one key per site forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit import registry
from consortium.audit.log import ENROLMENT, REVOCATION, AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.errors import EnrollmentError, UnknownSiteKey
from consortium.home import open_home
from consortium.store.database import Database
from policies.errors import InvalidSiteId
from site_node.protocol.keys import fingerprint
from tests.consortium.audit_fixture import site_key


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(Database(tmp_path / "runs.sqlite"), key=open_home().signing_key())


def replay(log: AuditLog) -> KeyRegistry:
    return KeyRegistry.from_entries(log.entries())


def test_enrolment_is_a_signed_entry_and_idempotent(log: AuditLog) -> None:
    k = site_key(1).public_key()
    first = registry.enrol(log, "cleveland", k, mode="deployment", node_id=7,
                           node_fingerprint="SHA256:abc")
    again = registry.enrol(log, "cleveland", k, mode="deployment", node_id=7,
                           node_fingerprint="SHA256:abc")
    assert again.enrolled_seq == first.enrolled_seq
    entries = [e for e in log.entries() if e.kind == ENROLMENT]
    assert len(entries) == 2  # the consortium key, then the site's
    assert entries[1].payload["subject"] == "cleveland"
    assert entries[1].payload["node_id"] == 7
    reg = replay(log)
    active = reg.active("cleveland")
    assert active is not None and active.fingerprint == fingerprint(k)
    assert reg.site_of_node(7) == "cleveland" and reg.site_of_node(8) is None


def test_rotation_ends_the_previous_key_from_its_entry_on(log: AuditLog) -> None:
    k1, k2 = site_key(1).public_key(), site_key(2).public_key()
    e1 = registry.enrol(log, "cleveland", k1, mode="deployment")
    between = log.append("note", {}).seq
    e2 = registry.enrol(log, "cleveland", k2, mode="deployment")
    assert log.entries()[-1].payload["replaces"] == fingerprint(k1)
    reg = replay(log)
    old, new = reg.all()
    assert old.ended_seq == e2.enrolled_seq and old.ended_reason == "replaced by a new key"
    assert new.active and reg.active("cleveland") == new
    assert reg.key_at("cleveland", between).fingerprint == fingerprint(k1)
    assert reg.key_at("cleveland", e2.enrolled_seq + 1).fingerprint == fingerprint(k2)
    for seq in (e1.enrolled_seq, e2.enrolled_seq):  # neither key is valid at an enrolment
        with pytest.raises(UnknownSiteKey, match="cleveland"):
            reg.key_at("cleveland", seq)
    assert reg.latest()["cleveland"].fingerprint == fingerprint(k2)


def test_one_receipt_key_for_two_sites_is_refused(log: AuditLog) -> None:
    k = site_key(1).public_key()
    registry.enrol(log, "cleveland", k, mode="deployment")
    n = len(log.entries())
    with pytest.raises(EnrollmentError, match="already enrolled for site 'cleveland'"):
        registry.enrol(log, "hungary", k, mode="deployment")
    assert len(log.entries()) == n
    registry.enrol(log, "cleveland", site_key(2).public_key(), mode="deployment")
    with pytest.raises(EnrollmentError, match="cleveland"):  # even after it was rotated out
        registry.enrol(log, "hungary", k, mode="deployment")


def test_revocation_is_a_log_entry(log: AuditLog) -> None:
    k = site_key(1).public_key()
    registry.enrol(log, "cleveland", k, mode="deployment", node_id=3)
    ended = registry.revoke(log, "cleveland", "laptop stolen")
    last = log.entries()[-1]
    assert last.kind == REVOCATION and last.payload["subject"] == "cleveland"
    assert last.payload["reason"] == "laptop stolen"
    assert last.payload["fingerprint"] == fingerprint(k)
    assert ended.ended_seq == last.seq
    reg = replay(log)
    assert reg.active("cleveland") is None and reg.site_of_node(3) is None
    assert reg.all()[0].ended_reason == "revoked: laptop stolen"
    with pytest.raises(EnrollmentError, match="no active enrolment"):
        registry.revoke(log, "cleveland", "again")


def test_an_invalid_site_id_is_refused(log: AuditLog) -> None:
    with pytest.raises(InvalidSiteId):
        registry.enrol(log, "<script>", Ed25519PrivateKey.generate().public_key(),
                       mode="deployment")
