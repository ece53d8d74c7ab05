"""The consortium's append-only, hash-chained, signed audit log, in the run store's database.

Three tables join the run store's SQLite file (its own tables are untouched):

``audit_log``
    One row per event (run start/stop, policy, enrolment, receipt, round, failure, security).
    Each entry's hash is the SHA-256 of the canonical JSON of ``seq, run_id, kind, created_at,
    payload_json, prev_hash``; ``prev_hash`` is the previous entry's hash (64 zeros for the
    first), and the consortium's Ed25519 key signs the 32 hash bytes.
``receipts``
    Every accepted site receipt (canonical JSON + hex signature), with the log entry holding it.
``audit_keys``
    The consortium's public key and every enrolled site public key with fingerprints.

Triggers make ``audit_log`` and ``receipts`` append-only. Standard library, NumPy and
``cryptography`` only (no torch, no Flower): the dashboard can read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consortium.keys import fingerprint, load_public_pem, public_pem
from consortium.receipt import KeyRing, ReceiptError, SignedReceipt

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CONSORTIUM_ROLE, SITE_ROLE = "consortium", "site"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, run_id TEXT, kind TEXT NOT NULL, created_at TEXT NOT NULL,
    payload_json TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, site TEXT NOT NULL,
    receipt_json TEXT NOT NULL, signature TEXT NOT NULL, key_fingerprint TEXT NOT NULL,
    epsilon REAL NOT NULL, log_seq INTEGER NOT NULL REFERENCES audit_log(seq),
    PRIMARY KEY (run_id, round, site)
);
CREATE TABLE IF NOT EXISTS audit_keys (
    role TEXT NOT NULL, subject TEXT NOT NULL, public_key_pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL, enrolled_at TEXT NOT NULL, PRIMARY KEY (role, subject, fingerprint)
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;
"""


class AuditLogError(Exception):
    """The audit log cannot be opened or written."""


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
        """The decoded payload."""
        return dict(json.loads(self.payload_json))


def entry_hash(seq: int, run_id: str | None, kind: str, created_at: str, payload_json: str,
               prev_hash: str) -> str:
    """The hash of an entry's content (what the chain links and the signature covers)."""
    body = {"seq": seq, "run_id": run_id, "kind": kind, "created_at": created_at,
            "payload_json": payload_json, "prev_hash": prev_hash}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt row as stored."""

    run_id: str
    round: int
    site: str
    receipt_json: str
    signature: str
    key_fingerprint: str
    log_seq: int

    def signed(self) -> SignedReceipt:
        """Rebuild the signed receipt (raises ``MalformedReceipt``)."""
        return SignedReceipt.from_parts(self.receipt_json, self.signature)


class AuditLog:
    """Writer and reader of the audit tables of one run store file.

    Parameters
    ----------
    path : Path
        The run store's SQLite file.
    key : Ed25519PrivateKey, optional
        The consortium's signing key; required to append.
    readonly : bool
        Open read-only (verification, reports, the dashboard).
    """

    def __init__(self, path: Path | str, *, key: Ed25519PrivateKey | None = None,
                 readonly: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.key = key
        try:
            if readonly:
                self._conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditLogError(f"cannot open audit log in {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def _insert_entry(self, kind: str, payload: dict[str, Any], run_id: str | None) -> AuditEntry:
        if self.key is None:
            raise AuditLogError("appending to the audit log needs the consortium key")
        row = self._conn.execute(
            "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row["seq"] + 1, row["entry_hash"]) if row else (1, GENESIS)
        created = datetime.now(UTC).isoformat()
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        digest = entry_hash(seq, run_id, kind, created, text, prev)
        sig = self.key.sign(bytes.fromhex(digest)).hex()
        self._conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
                           (seq, run_id, kind, created, text, prev, digest, sig))
        return AuditEntry(seq, run_id, kind, created, text, prev, digest, sig)

    def _write(self, fn: Any, *args: Any) -> Any:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise AuditLogError(f"write to audit log {self.path} failed: {exc}") from exc

    def append(self, kind: str, payload: dict[str, Any], run_id: str | None = None) -> AuditEntry:
        """Append one signed entry in its own transaction."""
        return self._write(self._insert_entry, kind, payload, run_id)  # type: ignore[no-any-return]

    def enrol(self, role: str, subject: str, key: Ed25519PublicKey, run_id: str | None = None
              ) -> str:
        """Enrol a public key (idempotent per fingerprint) and log it; returns the fingerprint."""
        fp, pem = fingerprint(key), public_pem(key)

        def _do() -> None:
            known = self._conn.execute(
                "SELECT 1 FROM audit_keys WHERE role=? AND subject=? AND fingerprint=?",
                (role, subject, fp)).fetchone()
            if known is None:
                self._conn.execute("INSERT INTO audit_keys VALUES (?,?,?,?,?)",
                                   (role, subject, pem, fp, datetime.now(UTC).isoformat()))
                self._insert_entry("enrolment", {"role": role, "subject": subject,
                                                 "fingerprint": fp, "public_key_pem": pem},
                                   run_id)

        self._write(_do)
        return fp

    def accept_receipt(self, run_id: str, signed: SignedReceipt) -> AuditEntry:
        """Verify a receipt against the enrolled keys, then store and log it.

        A receipt that does not verify, or belongs to another run, is logged as a security
        event and the error re-raised.

        Raises
        ------
        ReceiptError
            Unknown site key, bad signature, or wrong run.
        """
        r = signed.receipt
        try:
            if r.run_id != run_id:
                raise ReceiptError(f"receipt of site {r.site!r} is for run {r.run_id}, "
                                   f"not {run_id}")
            self.keyring().verify(signed)
        except ReceiptError as exc:
            self.security_event(run_id, f"receipt rejected: {exc}", site=r.site, rnd=r.round)
            raise
        fp = fingerprint(self.keyring().key_for(r.site))

        def _do() -> AuditEntry:
            entry = self._insert_entry("receipt", {"receipt_json": signed.data.decode(),
                                                   "signature": signed.signature.hex(),
                                                   "key_fingerprint": fp}, run_id)
            self._conn.execute("INSERT INTO receipts VALUES (?,?,?,?,?,?,?,?)",
                               (run_id, r.round, r.site, signed.data.decode(),
                                signed.signature.hex(), fp, r.epsilon, entry.seq))
            return entry

        return self._write(_do)  # type: ignore[no-any-return]

    def security_event(self, run_id: str | None, reason: str, **detail: Any) -> AuditEntry:
        """Log a security event (a rejected receipt, an unknown key, ...)."""
        log.warning("security event (run %s): %s", run_id, reason)
        return self.append("security", {"reason": reason, **detail}, run_id)

    # -- reading ----------------------------------------------------------------------------

    def entries(self) -> list[AuditEntry]:
        """Every entry, in sequence order."""
        rows = self._conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        return [AuditEntry(**dict(r)) for r in rows]

    def receipts(self, run_id: str | None = None) -> list[StoredReceipt]:
        """Stored receipts (of one run, if given), by round and site."""
        sql, params = "SELECT * FROM receipts", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)  # type: ignore[assignment]
        rows = self._conn.execute(sql + " ORDER BY run_id, round, site", params).fetchall()
        out = []
        for r in rows:
            fields = dict(r)
            fields.pop("epsilon")
            out.append(StoredReceipt(**fields))
        return out

    def keys(self, role: str | None = None) -> list[dict[str, str]]:
        """Enrolled keys (of one role, if given)."""
        rows = self._conn.execute("SELECT * FROM audit_keys ORDER BY role, subject").fetchall()
        return [dict(r) for r in rows if role is None or r["role"] == role]

    def keyring(self) -> KeyRing:
        """The enrolled site keys (the latest enrolment of each site wins)."""
        ring = KeyRing()
        for row in sorted(self.keys(SITE_ROLE), key=lambda r: r["enrolled_at"]):
            ring.enrol(row["subject"], load_public_pem(row["public_key_pem"]))
        return ring
