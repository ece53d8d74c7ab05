"""The consortium's append-only, hash-chained, signed audit log, in the run store's file.

``audit_log`` holds one row per event (run start/stop, enrolment, revocation, receipt, round,
failure, security). Each entry's hash is the SHA-256 of the canonical JSON of ``seq, run_id,
kind, created_at, payload_json, prev_hash``; ``prev_hash`` is the previous entry's hash (64
zeros for the first), and the consortium's Ed25519 key signs the 32 hash bytes. ``receipts``
indexes every accepted site receipt with the entry that holds it. Both tables are append-only
(triggers). The first entry enrols the consortium key, and a log is only ever appended to with
that key: a home with another key is refused. After each transaction that appended commits, the
log's signed head is rewritten beside the store (:mod:`consortium.audit.head`), so that cutting
entries off the end is detected.

Writes join the caller's transaction (:meth:`Database.transaction`), so a round's receipts and
entries commit together with the round itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit.head import head_path, write_head
from consortium.errors import AuditLogError
from consortium.store.database import Database
from policies import canonical as canonical_json
from site_node.protocol.keys import fingerprint, public_pem
from site_node.protocol.receipt import SignedReceipt

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CONSORTIUM_ROLE, SITE_ROLE = "consortium", "site"
ENROLMENT, REVOCATION, RECEIPT, SECURITY = "enrolment", "revocation", "receipt", "security"


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log."""

    seq: int
    run_id: str | None
    kind: str
    created_at: str
    payload_json: str
    prev_hash: str
    entry_hash: str
    signature: str

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded payload (raises ``ValueError`` if it is not a JSON object)."""
        try:
            value = json.loads(self.payload_json)
        except RecursionError:
            raise ValueError(f"entry {self.seq}: payload is nested too deeply") from None
        if not isinstance(value, dict):
            raise ValueError(f"entry {self.seq}: payload is not a JSON object")
        return value


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt row as stored."""

    run_id: str
    round: int
    site: str
    receipt_json: str
    signature: str
    key_fingerprint: str
    epsilon: float
    log_seq: int

    def signed(self) -> SignedReceipt:
        """Rebuild the signed receipt (raises ``MalformedReceipt``)."""
        return SignedReceipt.from_parts(self.receipt_json, self.signature)


def canonical(payload: dict[str, Any]) -> str:
    """Canonical JSON of a payload (:func:`policies.canonical.to_json`)."""
    return canonical_json.to_json(payload)


def entry_hash(seq: int, run_id: str | None, kind: str, created_at: str, payload_json: str,
               prev_hash: str) -> str:
    """The hash of an entry's content (what the chain links and the signature covers)."""
    body = {"seq": seq, "run_id": run_id, "kind": kind, "created_at": created_at,
            "payload_json": payload_json, "prev_hash": prev_hash}
    return hashlib.sha256(canonical(body).encode("ascii")).hexdigest()


class AuditLog:
    """Writer and reader of the audit tables of one run store.

    Parameters
    ----------
    db : Database
        The run store's database (shared with :class:`~consortium.store.run_store.RunStore`).
    key : Ed25519PrivateKey, optional
        The consortium's signing key; required to append. It is enrolled by the first entry
        of an empty log, and must be that key for a log that has entries.
    """

    def __init__(self, db: Database, *, key: Ed25519PrivateKey | None = None) -> None:
        self.db = db
        self.key = key
        if key is not None:
            self._bind_key(key)

    def _bind_key(self, key: Ed25519PrivateKey) -> None:
        mine = fingerprint(key.public_key())
        first = self.db.query("SELECT payload_json FROM audit_log WHERE seq=1")
        if not first:
            self.append(ENROLMENT, {"role": CONSORTIUM_ROLE, "subject": "consortium",
                                    "fingerprint": mine,
                                    "public_key_pem": public_pem(key.public_key())})
            return
        enrolled = json.loads(first[0]["payload_json"]).get("fingerprint")
        if enrolled != mine:
            raise AuditLogError(
                f"the audit log in {self.db.path} is signed by consortium key {enrolled}; this "
                f"home's key is {mine}: use the consortium home that created the store"
            )

    # -- writing ----------------------------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any], run_id: str | None = None) -> AuditEntry:
        """Append one signed entry (within the caller's transaction, or its own)."""
        if self.key is None:
            raise AuditLogError("appending to the audit log needs the consortium key")
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row["seq"] + 1, row["entry_hash"]) if row else (1, GENESIS)
            created = datetime.now(UTC).isoformat()
            text = canonical(payload)
            digest = entry_hash(seq, run_id, kind, created, text, prev)
            sig = self.key.sign(bytes.fromhex(digest)).hex()
            conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
                         (seq, run_id, kind, created, text, prev, digest, sig))
            self.db.after_commit("audit-head", self._write_head)
        return AuditEntry(seq, run_id, kind, created, text, prev, digest, sig)

    def _write_head(self) -> None:
        """Sign the committed log's head and write it beside the store."""
        assert self.key is not None
        first = self.db.query("SELECT entry_hash FROM audit_log WHERE seq=1")
        last = self.db.query("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        if not first or not last:
            return
        path = head_path(self.db.path)
        try:
            write_head(path, self.key, store=self.db.path, genesis=str(first[0]["entry_hash"]),
                       seq=int(last[0]["seq"]), entry_hash=str(last[0]["entry_hash"]))
        except OSError as exc:
            raise AuditLogError(f"the audit log of {self.db.path} was written, but its signed "
                                f"head {path} could not be: {exc}") from exc

    def store_receipt(self, run_id: str, signed: SignedReceipt, key_fingerprint: str
                      ) -> AuditEntry:
        """Log an already verified receipt and index it (one transaction)."""
        r = signed.receipt
        with self.db.transaction() as conn:
            entry = self.append(RECEIPT, {"receipt_json": signed.data.decode(),
                                          "signature": signed.signature.hex(),
                                          "key_fingerprint": key_fingerprint}, run_id)
            conn.execute("INSERT INTO receipts VALUES (?,?,?,?,?,?,?,?)",
                         (run_id, r.round, r.site, signed.data.decode(),
                          signed.signature.hex(), key_fingerprint, r.epsilon, entry.seq))
        return entry

    def security_event(self, run_id: str | None, reason: str, **detail: Any) -> AuditEntry:
        """Log a security event (a rejected reply or receipt, an impostor, ...)."""
        log.warning("security event (run %s): %s", run_id, reason)
        return self.append(SECURITY, {"reason": reason, **detail}, run_id)

    # -- reading ----------------------------------------------------------------------------

    def entries(self, run_id: str | None = None) -> list[AuditEntry]:
        """Every entry (those of one run, if given), in sequence order."""
        sql, params = "SELECT * FROM audit_log", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)  # type: ignore[assignment]
        return [AuditEntry(**dict(r)) for r in self.db.query(sql + " ORDER BY seq", params)]

    def receipts(self, run_id: str | None = None) -> list[StoredReceipt]:
        """Stored receipts (of one run, if given), by round and site."""
        sql, params = "SELECT * FROM receipts", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)  # type: ignore[assignment]
        rows = self.db.query(sql + " ORDER BY run_id, round, site", params)
        names = [f for f in StoredReceipt.__dataclass_fields__]
        return [StoredReceipt(**{k: r[k] for k in names}) for r in rows]
