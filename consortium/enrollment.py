"""Consortium membership: admitting (enrolling) and revoking hospital sites.

Enrolling a site registers its node public key with the SuperLink's node authentication and
records its receipt-signing public key in the consortium's register (``sites.json``), so the
consortium can later verify the privacy receipts the site signs. Revoking unregisters the node
key (the SuperLink refuses it from then on, and disconnects it if online) and marks the site
revoked; the record is kept for the audit trail.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from consortium import superlink
from consortium.home import ConsortiumHome
from site_node import keys

log = logging.getLogger(__name__)

ACTIVE = "active"
REVOKED = "revoked"
_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class EnrollmentError(Exception):
    """A site that cannot be enrolled or revoked, with the reason."""


@dataclass(frozen=True)
class Member:
    """One site in the consortium register."""

    site_id: str
    node_id: int
    node_key: str
    node_fingerprint: str
    receipt_key: str
    receipt_fingerprint: str
    enrolled_at: str
    status: str = ACTIVE
    revoked_at: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def load_members(home: ConsortiumHome) -> dict[str, Member]:
    """Every site ever enrolled, by site id."""
    if not home.sites_file.is_file():
        return {}
    raw = json.loads(home.sites_file.read_text(encoding="utf-8"))
    return {site: Member(**record) for site, record in raw.items()}


def _save(home: ConsortiumHome, members: dict[str, Member]) -> None:
    tmp = home.sites_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({s: asdict(m) for s, m in members.items()}, indent=2) + "\n")
    os.replace(tmp, home.sites_file)


def enrol_for_audit(home: ConsortiumHome, store: Path, site_id: str, receipt_pem: bytes) -> str:
    """Enrol a site's receipt key in the run store's audit log (signed with consortium-key.pem).

    The ServerApp verifies every receipt against the key enrolled here (docs/audit.md); returns
    the key's fingerprint.
    """
    from consortium.audit_log import SITE_ROLE, AuditLog
    from consortium.keys import load_private_key, load_public_pem

    with AuditLog(store, key=load_private_key(home.signing_key)) as audit:
        return audit.enrol(SITE_ROLE, site_id, load_public_pem(receipt_pem))


def enroll(
    home: ConsortiumHome,
    site_id: str,
    node_key: Path,
    receipt_key: Path,
    store: Path | None = None,
) -> Member:
    """Admit a site: register its node key with the SuperLink and record its receipt key.

    With ``store``, the receipt key is also enrolled in that run store's audit log.

    Raises
    ------
    EnrollmentError
        For an invalid site id, a site already active, or a key already used by a member.
    keys.KeyProblem
        For a missing or wrong-kind key file.
    superlink.SuperLinkError
        If the SuperLink is not running or refuses the registration.
    """
    if not _SITE_ID.match(site_id):
        raise EnrollmentError(f"invalid site id {site_id!r}: use lower-case letters, digits, _ -")
    node_pub = keys.load_node_public_key(node_key)
    receipt_pub = keys.load_receipt_public_key(receipt_key)
    members = load_members(home)
    if site_id in members and members[site_id].status == ACTIVE:
        raise EnrollmentError(f"site {site_id!r} is already enrolled (revoke it first)")
    fingerprint = keys.node_key_fingerprint(node_pub)
    if any(m.node_fingerprint == fingerprint for m in members.values()):
        raise EnrollmentError(
            f"node key {fingerprint} was already used by a member; the site must "
            "generate a new key (`site-node init --force-new-keys`)"
        )
    node_id = superlink.register_node(home, node_key, name=site_id)
    member = Member(
        site_id=site_id,
        node_id=node_id,
        node_key=Path(node_key).read_text(encoding="utf-8").strip(),
        node_fingerprint=fingerprint,
        receipt_key=Path(receipt_key).read_text(encoding="utf-8"),
        receipt_fingerprint=keys.receipt_key_fingerprint(receipt_pub),
        enrolled_at=_now(),
    )
    members[site_id] = member
    _save(home, members)
    if store is not None:
        enrol_for_audit(home, store, site_id, member.receipt_key.encode())
    log.info("enrolled %s as node %d (%s)", site_id, node_id, fingerprint)
    return member


def revoke(home: ConsortiumHome, site_id: str) -> Member:
    """Revoke a site: unregister its node key at the SuperLink and mark it revoked."""
    members = load_members(home)
    member = members.get(site_id)
    if member is None or member.status != ACTIVE:
        raise EnrollmentError(f"site {site_id!r} is not an active member")
    superlink.unregister_node(home, member.node_id)
    revoked = Member(**{**asdict(member), "status": REVOKED, "revoked_at": _now()})
    members[site_id] = revoked
    _save(home, members)
    log.info("revoked %s (node %d)", site_id, member.node_id)
    return revoked


def receipt_public_key_pem(home: ConsortiumHome, site_id: str) -> bytes:
    """The receipt-signing public key (PEM) of an active member, for verifying its receipts."""
    member = load_members(home).get(site_id)
    if member is None or member.status != ACTIVE:
        raise EnrollmentError(f"site {site_id!r} is not an active member")
    return member.receipt_key.encode()
