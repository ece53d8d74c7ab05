"""Verify a run store's audit trail, independently of the code that wrote it.

:func:`verify_store` checks, in order, and raises at the first broken record:

1. the chain: sequence numbers 1..n without gaps, each ``prev_hash`` the previous entry's hash,
   each entry hash recomputed from its content, each signature valid under the consortium key
   (pinned by the caller, else the one the log's first entry enrolled);
2. the end: the log reaches its signed head (:mod:`consortium.audit.head`, kept beside the
   store, or given) with the same hash; a log shorter than its head lost its end
   (:class:`LogTruncated`). Without a head, truncation cannot be excluded: that fails
   (:class:`HeadMissing`) unless the caller accepts it (``require_head=False``);
3. every receipt: present in the log, identical in the ``receipts`` table, canonical, signed by
   the key its site had enrolled *when the receipt was logged* (so key rotation never breaks
   earlier receipts), for the run's policy hash and task hash. A version-1 receipt (written
   before tasks existed, with no task hash) is accepted only in a run whose run-start entry
   records no task either (a store from before tasks): in a run with a task it is refused, since
   it cannot say which task it trained; its ``receipts`` row's ε the receipt's;
4. every row the store shows (runs, rounds, site rounds, checkpoints) is covered by the signed
   log and equals it, and a finished run has its signed run-stop
   (:mod:`consortium.audit.coverage`);
5. every ε: recomputed from the receipts' mechanism parameters by
   :mod:`consortium.audit.accountant` (``dp_accounting``), within 1% of the claim (plus
   Opacus' stated error of 0.01 for PRV claims), once per distinct mechanism;
6. no ceiling was passed: a site's claimed ε at most its ceiling, the recomputed ε at most the
   ceiling plus the 1% tolerance, the site's ceiling at most the consortium's;
7. no security event: a run whose trail is intact but records a rejected reply or receipt
   fails with :class:`SecurityEventsFound`, naming every such event.

Each failure is a small exception class naming the record; nothing returns False. Only data
problems are turned into verification failures; a bug in this code surfaces as itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium.audit.coverage import check_orphans, check_run_rows
from consortium.audit.epsilon_checks import EpsilonCheck, check_epsilons, check_units
from consortium.audit.head import check_head, head_path, read_head
from consortium.audit.log import (
    CONSORTIUM_ROLE,
    ENROLMENT,
    GENESIS,
    SECURITY,
    AuditEntry,
    AuditLog,
    entry_hash,
)
from consortium.audit.payload import payload as _payload
from consortium.audit.receipt_checks import run_receipts
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RUN_START
from consortium.errors import (
    AuditVerificationError,
    ChainBroken,
    HeadMissing,
    ReceiptInvalid,
    SecurityEventsFound,
    SignatureInvalid,
)
from consortium.store.database import Database
from consortium.store.export import privacy_unit
from consortium.store.run_store import RunStore
from site_node.protocol.errors import ProtocolError
from site_node.protocol.keys import fingerprint, load_public_pem


@dataclass(frozen=True)
class SecurityEvent:
    """A security event the log records for a run."""

    seq: int
    run_id: str | None
    reason: str


@dataclass
class VerificationResult:
    """What a verification covered."""

    entries: int = 0
    consortium_fingerprint: str = ""
    site_fingerprints: dict[str, list[str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=dict)
    checks: list[EpsilonCheck] = field(default_factory=list)
    security_events: list[SecurityEvent] = field(default_factory=list)
    #: The signed head checked (None: none was, and truncation of the end is not excluded).
    head_path: str | None = None
    head_seq: int | None = None
    #: Entries appended after the head was written (e.g. a crash between commit and head).
    beyond_head: int = 0


#: ``progress(stage, done, total)``: told how far a long verification has got.
Progress = Callable[[str, int, int], None]
__all__ = ["EpsilonCheck", "Progress", "SecurityEvent", "VerificationResult", "check_epsilons",
           "verify_chain", "verify_store"]


def _consortium_key(entries: list[AuditEntry], pinned: Ed25519PublicKey | None
                    ) -> Ed25519PublicKey:
    if pinned is not None:
        return pinned
    if entries and entries[0].kind == ENROLMENT:
        p = _payload(entries[0])
        if p.get("role") == CONSORTIUM_ROLE:
            try:
                return load_public_pem(str(p.get("public_key_pem")), "consortium key")
            except ProtocolError as exc:
                raise ChainBroken(f"audit_log entry seq=1: {exc}") from None
    raise ChainBroken("the audit log does not begin by enrolling the consortium key")


def _chain(entries: list[AuditEntry], key: Ed25519PublicKey, pinned: bool) -> None:
    """:func:`verify_chain`; a pinned key the log did not enroll is named as such."""
    try:
        verify_chain(entries, key)
    except SignatureInvalid:
        try:
            enrolled = entries[0].payload.get("fingerprint") if pinned else None
        except ValueError:
            enrolled = None
        if enrolled is not None and enrolled != fingerprint(key):
            raise SignatureInvalid(
                f"audit_log entry seq=1: the log enrolled consortium key {str(enrolled)[:16]}…, "
                f"not the pinned key {fingerprint(key)[:16]}… (a store of another consortium, "
                "or a log rewritten under another key)") from None
        raise


def verify_chain(entries: list[AuditEntry], key: Ed25519PublicKey) -> None:
    """Check sequence, links, hashes and signatures of every entry (raises on the first)."""
    prev = GENESIS
    for i, e in enumerate(entries, start=1):
        where = f"audit_log entry seq={e.seq} ({e.kind})"
        if e.seq != i:
            raise ChainBroken(f"{where}: expected seq {i}: an entry is missing or reordered")
        if e.prev_hash != prev:
            raise ChainBroken(f"{where}: prev_hash does not link to entry {i - 1}")
        if not all(isinstance(v, str) for v in (e.kind, e.created_at, e.payload_json,
                                                e.entry_hash, e.signature)) or \
                not isinstance(e.run_id, str | None):
            raise ChainBroken(f"{where}: a column holds a value of the wrong type (altered)")
        digest = entry_hash(e.seq, e.run_id, e.kind, e.created_at, e.payload_json, e.prev_hash)
        if digest != e.entry_hash:
            raise ChainBroken(f"{where}: content does not match its hash (altered)")
        try:
            key.verify(bytes.fromhex(e.signature), bytes.fromhex(e.entry_hash))
        except (InvalidSignature, ValueError):
            raise SignatureInvalid(f"{where}: consortium signature does not verify") from None
        prev = e.entry_hash


def _registry(entries: list[AuditEntry]) -> KeyRegistry:
    try:
        return KeyRegistry.from_entries(entries)
    except (ValueError, KeyError, TypeError, ProtocolError) as exc:
        raise ReceiptInvalid(f"an enrolment entry is malformed: {exc}") from None


def _policy(start: AuditEntry) -> dict[str, Any]:
    p = _payload(start)
    text, sha = str(p.get("policy_json", "")), str(p.get("policy_sha256", ""))
    if hashlib.sha256(text.encode()).hexdigest() != sha:
        raise ChainBroken(f"audit_log entry seq={start.seq} (run-start): the policy does not "
                          f"match its hash {sha[:16]}…")
    try:
        policy = json.loads(text)
        float(policy["epsilon_ceiling"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ChainBroken(f"audit_log entry seq={start.seq} (run-start): unreadable policy: "
                          f"{exc}") from None
    return dict(policy)


def _task_sha(start: AuditEntry) -> str | None:
    """The task hash the run-start entry records (None for a run recorded before tasks),
    checked against the task it records."""
    p = _payload(start)
    text, sha = p.get("task_json"), p.get("task_sha256")
    if text is None and sha is None:
        return None
    if not isinstance(text, str) or not isinstance(sha, str) or \
            hashlib.sha256(text.encode()).hexdigest() != sha:
        raise ChainBroken(f"audit_log entry seq={start.seq} (run-start): the task does not "
                          f"match its hash {str(sha)[:16]}…")
    return sha


def _security(entries: list[AuditEntry], runs: set[str]) -> list[SecurityEvent]:
    return [SecurityEvent(e.seq, e.run_id, str(_payload(e).get("reason", "")))
            for e in entries if e.kind == SECURITY and e.run_id in runs]


def _check_end(path: Path, head: Path | None, require_head: bool, entries: list[AuditEntry],
               key: Ed25519PublicKey, result: VerificationResult) -> None:
    where = head or head_path(path)
    try:
        signed = read_head(where)
    except HeadMissing:
        if head is not None or require_head:
            raise HeadMissing(
                f"no signed audit head at {where}: without it, entries cut off the end of the "
                f"log of {path} cannot be detected. Verify in the consortium home that wrote "
                "the store, give its head with --head FILE, or accept the risk with "
                "--no-head") from None
        return
    result.beyond_head = check_head(signed, where, entries, key)
    result.head_path, result.head_seq = str(where), signed.seq


def _verify_run(store: RunStore, log: AuditLog, start: AuditEntry, run_entries: list[AuditEntry],
                registry: KeyRegistry, result: VerificationResult) -> None:
    rid = str(start.run_id)
    policy = _policy(start)
    receipts = run_receipts(log, run_entries, registry, rid,
                            str(_payload(start)["policy_sha256"]), _task_sha(start))
    check_run_rows(store, start, policy, run_entries, receipts)
    check_units(receipts, privacy_unit(_payload(start).get("task_json")))
    result.checks += check_epsilons(receipts, float(policy["epsilon_ceiling"]))
    result.runs.append(rid)
    result.modes[rid] = str(_payload(start).get("mode", "unrecorded"))


def verify_store(path: Path | str, *, run_id: str | None = None,
                 consortium_key: Ed25519PublicKey | None = None, head: Path | None = None,
                 require_head: bool = True, progress: Progress | None = None
                 ) -> VerificationResult:
    """Verify the whole chain and its end, and the receipts, rows, ε and security events of one
    run (every run, and that no row escapes the log, when None).

    ``head`` is the signed head file (default: beside the store); without one, verification
    fails unless ``require_head`` is False. ``progress`` is told how far it has got.

    Raises
    ------
    AuditVerificationError
        A subclass naming the first broken record, or :class:`SecurityEventsFound` naming every
        security event of an otherwise intact trail.
    consortium.errors.StoreError
        If the store cannot be opened or read.
    """
    path = Path(path).expanduser().resolve()
    tell = progress or (lambda stage, done, total: None)
    db = Database(path, readonly=True)
    try:
        log, store = AuditLog(db), RunStore(db)
        entries = log.entries()
        key = _consortium_key(entries, consortium_key)
        _chain(entries, key, consortium_key is not None)
        tell("chain", len(entries), len(entries))
        result = VerificationResult(entries=len(entries), consortium_fingerprint=fingerprint(key))
        _check_end(path, head, require_head, entries, key, result)
        registry = _registry(entries)
        by_run: dict[str, list[AuditEntry]] = defaultdict(list)
        for e in entries:
            if e.run_id is not None:
                by_run[e.run_id].append(e)
        starts = {rid: e for rid, es in by_run.items() for e in es if e.kind == RUN_START}
        if run_id is not None and run_id not in starts:
            raise AuditVerificationError(f"run {run_id}: no run-start entry in the audit log")
        if run_id is None:
            check_orphans(store, set(starts))
        for k in registry.all():
            result.site_fingerprints.setdefault(k.site, []).append(k.fingerprint)
        chosen = [rid for rid in starts if run_id is None or rid == run_id]
        for done, rid in enumerate(chosen, start=1):
            _verify_run(store, log, starts[rid], by_run[rid], registry, result)
            tell("runs", done, len(chosen))
        result.security_events = _security(entries, set(result.runs))
    finally:
        db.close()
    if result.security_events:
        listed = "; ".join(f"seq={s.seq} run {s.run_id}: {s.reason}"
                           for s in result.security_events)
        raise SecurityEventsFound(f"{len(result.security_events)} security event(s): {listed}",
                                  result)
    return result
