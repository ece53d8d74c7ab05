"""The one registry of site keys, derived from the signed audit log.

Enrolling a site writes an ``enrolment`` entry (its receipt key, and in deployment its node id
and node key fingerprint); enrolling another key for the same site is a rotation that ends the
previous key from that entry on; ``revocation`` ends a site's key. Each receipt is verified
under the key that was enrolled for its site when the receipt was logged, so rotation never
breaks the verification of earlier receipts. A receipt key belongs to one site forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium.audit.log import ENROLMENT, REVOCATION, SITE_ROLE, AuditEntry, AuditLog
from consortium.errors import EnrollmentError, UnknownSiteKey
from policies.identity import check_site_id
from site_node.protocol.keys import fingerprint, load_public_pem, public_pem


@dataclass(frozen=True)
class EnrolledKey:
    """One enrolment of a site's receipt key, and when it ended (rotation or revocation)."""

    site: str
    key: Ed25519PublicKey
    fingerprint: str
    node_id: int | None
    node_fingerprint: str | None
    mode: str
    enrolled_seq: int
    enrolled_at: str
    ended_seq: int | None = None
    ended_reason: str | None = None

    def valid_at(self, seq: int) -> bool:
        """Whether this key was the site's enrolled key at log sequence number ``seq``."""
        return self.enrolled_seq < seq and (self.ended_seq is None or seq < self.ended_seq)

    @property
    def active(self) -> bool:
        """Whether the key is still enrolled."""
        return self.ended_seq is None


class KeyRegistry:
    """Every site key enrolment, in log order.

    Raises
    ------
    ValueError
        From :meth:`from_entries`, if an enrolment entry is malformed or its key does not
        match its fingerprint.
    """

    def __init__(self, keys: Iterable[EnrolledKey] = ()) -> None:
        self._keys = list(keys)

    @classmethod
    def from_entries(cls, entries: Iterable[AuditEntry]) -> KeyRegistry:
        """Replay the log's enrolment and revocation entries."""
        registry = cls()
        for e in entries:
            if e.kind not in (ENROLMENT, REVOCATION):
                continue
            p = e.payload
            if p.get("role") != SITE_ROLE:
                continue
            if e.kind == REVOCATION:
                registry._end(str(p["subject"]), e.seq, f"revoked: {p.get('reason', '')}")
                continue
            key = load_public_pem(str(p["public_key_pem"]), f"audit_log entry seq={e.seq}")
            if fingerprint(key) != p.get("fingerprint"):
                raise ValueError(f"audit_log entry seq={e.seq}: the enrolled key does not "
                                 "match its fingerprint")
            registry._end(str(p["subject"]), e.seq, "replaced by a new key")
            node = p.get("node_id")
            registry._keys.append(EnrolledKey(
                site=str(p["subject"]), key=key, fingerprint=str(p["fingerprint"]),
                node_id=int(node) if node is not None else None,
                node_fingerprint=p.get("node_fingerprint"), mode=str(p.get("mode", "")),
                enrolled_seq=e.seq, enrolled_at=e.created_at))
        return registry

    def _end(self, site: str, seq: int, reason: str) -> None:
        self._keys = [replace(k, ended_seq=seq, ended_reason=reason)
                      if k.site == site and k.active else k for k in self._keys]

    def all(self) -> list[EnrolledKey]:
        """Every enrolment, oldest first."""
        return list(self._keys)

    def active(self, site: str) -> EnrolledKey | None:
        """The site's currently enrolled key, if any."""
        return next((k for k in self._keys if k.site == site and k.active), None)

    def owner_of(self, key_fingerprint: str) -> str | None:
        """The site a receipt key was ever enrolled for."""
        return next((k.site for k in self._keys if k.fingerprint == key_fingerprint), None)

    def site_of_node(self, node_id: int) -> str | None:
        """The site whose active enrolment names this node id."""
        return next((k.site for k in self._keys if k.active and k.node_id == node_id), None)

    def key_at(self, site: str, seq: int) -> EnrolledKey:
        """The key enrolled for ``site`` at log position ``seq``; raises :class:`UnknownSiteKey`."""
        for k in self._keys:
            if k.site == site and k.valid_at(seq):
                return k
        raise UnknownSiteKey(f"site {site!r} had no enrolled receipt key at log entry {seq}")

    def latest(self) -> dict[str, EnrolledKey]:
        """Each site's latest enrolment (active or ended)."""
        out: dict[str, EnrolledKey] = {}
        for k in self._keys:
            out[k.site] = k
        return out


def enrol(log: AuditLog, site: str, key: Ed25519PublicKey, *, mode: str,
          node_id: int | None = None, node_fingerprint: str | None = None,
          run_id: str | None = None) -> EnrolledKey:
    """Enrol (or rotate) a site's receipt key in the signed log; idempotent for the same key.

    Raises
    ------
    policies.errors.InvalidSiteId
        For a site id that breaks the one site id rule.
    EnrollmentError
        If the key was ever enrolled for another site.
    """
    check_site_id(site)
    fp = fingerprint(key)
    with log.db.transaction():
        registry = KeyRegistry.from_entries(log.entries())
        owner = registry.owner_of(fp)
        if owner is not None and owner != site:
            raise EnrollmentError(f"receipt key {fp[:16]}… is already enrolled for site "
                                  f"{owner!r}; every site needs a key of its own")
        current = registry.active(site)
        if current is not None and (current.fingerprint, current.node_id) == (fp, node_id):
            return current
        payload: dict[str, object] = {"role": SITE_ROLE, "subject": site, "fingerprint": fp,
                                      "public_key_pem": public_pem(key), "mode": mode}
        if node_id is not None:
            payload |= {"node_id": node_id, "node_fingerprint": node_fingerprint}
        if current is not None:
            payload["replaces"] = current.fingerprint
        entry = log.append(ENROLMENT, payload, run_id)
    return EnrolledKey(site=site, key=key, fingerprint=fp, node_id=node_id,
                       node_fingerprint=node_fingerprint, mode=mode, enrolled_seq=entry.seq,
                       enrolled_at=entry.created_at)


def revoke(log: AuditLog, site: str, reason: str) -> EnrolledKey:
    """End a site's enrolment (a signed ``revocation`` entry); raises ``EnrollmentError``."""
    with log.db.transaction():
        current = KeyRegistry.from_entries(log.entries()).active(site)
        if current is None:
            raise EnrollmentError(f"site {site!r} has no active enrolment")
        entry = log.append(REVOCATION, {"role": SITE_ROLE, "subject": site,
                                        "fingerprint": current.fingerprint, "reason": reason})
    return replace(current, ended_seq=entry.seq, ended_reason=f"revoked: {reason}")
