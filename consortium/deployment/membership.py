"""Consortium membership: admitting (enrolling) and revoking hospital sites.

Enrolling a site registers its node public key with the SuperLink's node authentication (which
assigns the node id its replies will carry) and enrols its receipt-signing key, with that node
id, in the signed audit log of the consortium's run store: the one key registry
(:mod:`consortium.audit.registry`). Revoking unregisters the node key (the SuperLink refuses it
from then on) and writes a signed revocation entry; the history stays in the log.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.audit.registry import EnrolledKey, KeyRegistry
from consortium.deployment import superlink
from consortium.deployment.setup import Deployment
from consortium.errors import EnrollmentError
from consortium.store.database import Database
from consortium.store.records import MODE_DEPLOYMENT
from policies.identity import check_site_id
from site_node.protocol import keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One site's latest enrolment, as the coordinator lists it."""

    site_id: str
    node_id: int | None
    node_fingerprint: str | None
    receipt_fingerprint: str
    enrolled_at: str
    status: str
    mode: str


def enroll(dep: Deployment, site_id: str, node_key: Path, receipt_key: Path,
           store: Path | None = None) -> Member:
    """Admit a site: register its node key with the SuperLink, enrol its receipt key.

    Raises
    ------
    policies.errors.InvalidSiteId
        For a site id that breaks the one site id rule.
    EnrollmentError
        For a site already active, or a key already used by another site.
    site_node.protocol.errors.KeyFileError
        For a missing or wrong-kind key file.
    SuperLinkError
        If the SuperLink is not running or refuses the registration.
    """
    check_site_id(site_id)
    node_pub = keys.load_node_public_key(node_key)
    receipt_pub = keys.load_public_key_file(receipt_key)
    node_fp = keys.node_key_fingerprint(node_pub)
    with closing(Database(store or dep.home.store)) as db:
        audit = AuditLog(db, key=dep.home.signing_key())
        known = KeyRegistry.from_entries(audit.entries())
        if known.active(site_id) is not None:
            raise EnrollmentError(f"site {site_id!r} is already enrolled (revoke it first)")
        if any(k.node_fingerprint == node_fp for k in known.all()):
            raise EnrollmentError(f"node key {node_fp} was already enrolled; the site must make "
                                  "a new site home (`site-node init --home NEW_DIR`)")
        owner = known.owner_of(keys.fingerprint(receipt_pub))
        if owner is not None and owner != site_id:
            raise EnrollmentError(f"this receipt key is already enrolled for site {owner!r}")
        node_id = superlink.register_node(dep, node_key, name=site_id)
        enrolled = registry.enrol(audit, site_id, receipt_pub, mode=MODE_DEPLOYMENT,
                                  node_id=node_id, node_fingerprint=node_fp)
    log.info("enrolled %s as node %d (%s)", site_id, node_id, node_fp)
    return _member(enrolled)


def revoke(dep: Deployment, site_id: str, reason: str = "revoked by the coordinator",
           store: Path | None = None) -> Member:
    """Revoke a site: unregister its node key at the SuperLink and log the revocation."""
    with closing(Database(store or dep.home.store)) as db:
        audit = AuditLog(db, key=dep.home.signing_key())
        current = KeyRegistry.from_entries(audit.entries()).active(site_id)
        if current is None:
            raise EnrollmentError(f"site {site_id!r} is not an active member")
        if current.node_id is not None:
            superlink.unregister_node(dep, current.node_id)
        ended = registry.revoke(audit, site_id, reason)
    log.info("revoked %s (node %s)", site_id, current.node_id)
    return _member(ended)


def members(dep: Deployment, store: Path | None = None) -> list[Member]:
    """Every site ever enrolled: its latest enrolment, active or not."""
    with closing(Database(store or dep.home.store)) as db:
        latest = KeyRegistry.from_entries(AuditLog(db).entries()).latest()
    return [_member(k) for _, k in sorted(latest.items())]


def _member(k: EnrolledKey) -> Member:
    status = "active" if k.active else (k.ended_reason or "ended")
    return Member(site_id=k.site, node_id=k.node_id, node_fingerprint=k.node_fingerprint,
                  receipt_fingerprint=k.fingerprint, enrolled_at=k.enrolled_at, status=status,
                  mode=k.mode)
