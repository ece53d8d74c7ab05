"""Verify a run store's audit trail, independently of the code that wrote it.

:func:`verify_store` checks, in order, and raises at the first broken record:

1. the chain: sequence numbers 1..n without gaps, each ``prev_hash`` the previous entry's hash,
   each entry hash recomputed from its content, each signature valid under the consortium key
   (pinned by the caller, else the one the log's first entry enrolled);
2. every receipt: present in the log, identical in the ``receipts`` table, canonical, signed by
   the key its site had enrolled *when the receipt was logged* (so key rotation never breaks
   earlier receipts), for the run's policy hash and task hash. A version-1 receipt (written
   before tasks existed, with no task hash) is accepted only in a run whose run-start entry
   records no task either (a store from before tasks): in a run with a task it is refused, since
   it cannot say which task it trained;
3. every ε: recomputed from the receipts' mechanism parameters by
   :mod:`consortium.audit.accountant` (``dp_accounting``), within 1% of the claim (plus
   Opacus' stated error of 0.01 for PRV claims);
4. no ceiling was passed: a site's claimed ε at most its ceiling, the recomputed ε at most the
   ceiling plus the 1% tolerance, the site's ceiling at most the consortium's;
5. no security event: a run whose trail is intact but records a rejected reply or receipt
   fails with :class:`SecurityEventsFound`, naming every such event.

Each failure is a small exception class naming the record; nothing returns False. Only data
problems are turned into verification failures; a bug in this code surfaces as itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium.audit import accountant as ia
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
    CeilingPassed,
    ChainBroken,
    EpsilonMismatch,
    ReceiptInvalid,
    SecurityEventsFound,
    SignatureInvalid,
)
from consortium.store.database import Database
from site_node.protocol.errors import ProtocolError
from site_node.protocol.keys import fingerprint, load_public_pem
from site_node.protocol.receipt import Receipt


@dataclass(frozen=True)
class EpsilonCheck:
    """One receipt's ε, claimed and recomputed, with its ceiling."""

    run_id: str
    site: str
    round: int
    claimed: float
    independent: float
    ceiling: float
    accountant: str
    delta: float


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


def verify_chain(entries: list[AuditEntry], key: Ed25519PublicKey) -> None:
    """Check sequence, links, hashes and signatures of every entry (raises on the first)."""
    prev = GENESIS
    for i, e in enumerate(entries, start=1):
        where = f"audit_log entry seq={e.seq} ({e.kind})"
        if e.seq != i:
            raise ChainBroken(f"{where}: expected seq {i}: an entry is missing or reordered")
        if e.prev_hash != prev:
            raise ChainBroken(f"{where}: prev_hash does not link to entry {i - 1}")
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


def check_epsilons(receipts: list[Receipt], consortium_ceiling: float) -> list[EpsilonCheck]:
    """Recompute every site's cumulative ε and check the ceilings (raises on the first)."""
    by_site: dict[str, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_site[r.site].append(r)
    checks = []
    for site, rs in sorted(by_site.items()):
        rs.sort(key=lambda r: r.round)
        if len({(r.delta, r.accountant) for r in rs}) != 1:
            raise ReceiptInvalid(f"site {site}: δ or accountant changed within run {rs[0].run_id}")
        try:
            recomputed = ia.cumulative_epsilons(
                [(r.noise_multiplier, r.sample_rate, r.steps) for r in rs], rs[0].delta,
                rs[0].accountant)
        except ia.AccountingError as exc:
            raise ReceiptInvalid(f"site {site} run {rs[0].run_id}: {exc}") from None
        for r, eps in zip(rs, recomputed, strict=True):
            checks.append(_check_one(r, eps, consortium_ceiling))
    return checks


def _check_one(r: Receipt, eps: float, consortium_ceiling: float) -> EpsilonCheck:
    where = f"receipt of site {r.site} run {r.run_id} round {r.round}"
    if not ia.agrees(r.epsilon, eps, accountant=r.accountant):
        raise EpsilonMismatch(f"{where}: claimed ε={r.epsilon:.6f} but dp_accounting gives "
                              f"{eps:.6f} ({r.accountant}, δ={r.delta:g}); tolerance "
                              f"{ia.TOLERANCE:.0%}"
                              + (f" + {ia.PRV_EPS_ERROR:g}" if r.accountant == "prv" else ""))
    if r.epsilon_ceiling > consortium_ceiling:
        raise CeilingPassed(f"{where}: site ceiling {r.epsilon_ceiling:g} is above the "
                            f"consortium's {consortium_ceiling:g}")
    if r.epsilon > r.epsilon_ceiling or eps > r.epsilon_ceiling * (1 + ia.TOLERANCE):
        raise CeilingPassed(f"{where}: ε={r.epsilon:.6f} (recomputed {eps:.6f}) passed the "
                            f"per-run ceiling {r.epsilon_ceiling:g}")
    if r.lifetime_epsilon > r.lifetime_epsilon_ceiling:
        raise CeilingPassed(f"{where}: lifetime ε={r.lifetime_epsilon:.6f} passed the lifetime "
                            f"ceiling {r.lifetime_epsilon_ceiling:g}")
    if r.lifetime_epsilon < r.epsilon * (1 - ia.TOLERANCE):
        raise EpsilonMismatch(f"{where}: lifetime ε={r.lifetime_epsilon:.6f} is below this "
                              f"run's ε={r.epsilon:.6f}")
    return EpsilonCheck(r.run_id, r.site, r.round, r.epsilon, eps, r.epsilon_ceiling,
                        r.accountant, r.delta)


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


def verify_store(path: Path | str, *, run_id: str | None = None,
                 consortium_key: Ed25519PublicKey | None = None) -> VerificationResult:
    """Verify the whole chain, and the receipts, ε and security events of one run (every run
    when None).

    Raises
    ------
    AuditVerificationError
        A subclass naming the first broken record, or :class:`SecurityEventsFound` naming every
        security event of an otherwise intact trail.
    consortium.errors.StoreError
        If the store cannot be opened or read.
    """
    db = Database(path, readonly=True)
    try:
        log = AuditLog(db)
        entries = log.entries()
        key = _consortium_key(entries, consortium_key)
        verify_chain(entries, key)
        registry = _registry(entries)
        starts = {e.run_id: e for e in entries if e.kind == RUN_START and e.run_id is not None}
        if run_id is not None and run_id not in starts:
            raise AuditVerificationError(f"run {run_id}: no run-start entry in the audit log")
        result = VerificationResult(entries=len(entries), consortium_fingerprint=fingerprint(key))
        for k in registry.all():
            result.site_fingerprints.setdefault(k.site, []).append(k.fingerprint)
        for rid, start in starts.items():
            if run_id is not None and rid != run_id:
                continue
            policy = _policy(start)
            receipts = run_receipts(log, entries, registry, rid,
                                    str(_payload(start)["policy_sha256"]), _task_sha(start))
            result.checks += check_epsilons(receipts, float(policy["epsilon_ceiling"]))
            result.runs.append(rid)
            result.modes[rid] = str(_payload(start).get("mode", "unrecorded"))
        result.security_events = _security(entries, set(result.runs))
    finally:
        db.close()
    if result.security_events:
        listed = "; ".join(f"seq={s.seq} run {s.run_id}: {s.reason}"
                           for s in result.security_events)
        raise SecurityEventsFound(f"{len(result.security_events)} security event(s): {listed}",
                                  result)
    return result
