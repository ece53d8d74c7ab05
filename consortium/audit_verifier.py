"""Verify a run store's audit trail, independently of the code that wrote it.

:func:`verify_store` checks, in order, and raises at the first broken record:

1. the chain: sequence numbers 1..n without gaps, each ``prev_hash`` the previous entry's hash,
   each entry hash recomputed from its content, each signature valid under the consortium key
   (pinned by the caller, else the one the log enrolled);
2. every receipt: present in the log, identical in the ``receipts`` table, canonical, signed by
   the key its site enrolled in the (signed) log, for the run's policy hash;
3. every ε: recomputed from the receipts' mechanism parameters by
   :mod:`consortium.independent_accountant` (``dp_accounting``), within 1% of the claim;
4. no ceiling was passed: a site's claimed ε at most its ceiling, the recomputed ε at most the
   ceiling plus the 1% tolerance, the site's ceiling at most the consortium's.

Each failure is a small exception class naming the record; nothing returns False.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium import independent_accountant as ia
from consortium.audit_log import CONSORTIUM_ROLE, GENESIS, AuditEntry, AuditLog, entry_hash
from consortium.keys import fingerprint, load_public_pem
from consortium.receipt import KeyRing, Receipt, ReceiptError, SignedReceipt


class AuditVerificationError(Exception):
    """The audit trail does not verify; the message names the first broken record."""


class ChainBroken(AuditVerificationError):
    """An entry is missing, reordered or altered."""


class SignatureInvalid(AuditVerificationError):
    """An entry or receipt signature does not verify."""


class ReceiptInvalid(AuditVerificationError):
    """A receipt is malformed, unknown, or disagrees with the log or the run."""


class EpsilonMismatch(AuditVerificationError):
    """A claimed ε is not reproduced by the independent accountant."""


class CeilingPassed(AuditVerificationError):
    """A site's ε passed a ceiling."""


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


@dataclass
class VerificationResult:
    """What a successful verification covered."""

    entries: int = 0
    consortium_fingerprint: str = ""
    site_fingerprints: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    checks: list[EpsilonCheck] = field(default_factory=list)


def _consortium_key(entries: list[AuditEntry], pinned: Ed25519PublicKey | None
                    ) -> Ed25519PublicKey:
    if pinned is not None:
        return pinned
    for e in entries:
        if e.kind == "enrolment" and e.payload.get("role") == CONSORTIUM_ROLE:
            return load_public_pem(e.payload["public_key_pem"])
    raise ChainBroken("the audit log enrols no consortium key")


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


def _site_keys(entries: list[AuditEntry]) -> tuple[KeyRing, dict[str, str]]:
    ring, fps = KeyRing(), {}
    for e in entries:
        if e.kind == "enrolment" and e.payload.get("role") == "site":
            key = load_public_pem(e.payload["public_key_pem"])
            if fingerprint(key) != e.payload.get("fingerprint"):
                raise ReceiptInvalid(f"audit_log entry seq={e.seq}: enrolled key does not "
                                     "match its fingerprint")
            ring.enrol(e.payload["subject"], key)
            fps[e.payload["subject"]] = fingerprint(key)
    return ring, fps


def _receipts(log: AuditLog, entries: list[AuditEntry], ring: KeyRing, run_id: str,
              policy_sha: str) -> list[Receipt]:
    in_log = [e for e in entries if e.kind == "receipt" and e.run_id == run_id]
    table = {r.log_seq: r for r in log.receipts(run_id)}
    if set(table) != {e.seq for e in in_log}:
        raise ReceiptInvalid(f"run {run_id}: the receipts table and the audit log disagree "
                             f"(log seqs {sorted(e.seq for e in in_log)}, table {sorted(table)})")
    out = []
    for e in in_log:
        where = f"receipt in audit_log entry seq={e.seq}"
        p, row = e.payload, table[e.seq]
        if (row.receipt_json, row.signature) != (p["receipt_json"], p["signature"]):
            raise ReceiptInvalid(f"{where}: the receipts table row differs from the log")
        try:
            signed = SignedReceipt.from_parts(p["receipt_json"], p["signature"])
            ring.verify(signed)
        except ReceiptError as exc:
            kind = SignatureInvalid if "signature" in str(exc) else ReceiptInvalid
            raise kind(f"{where}: {exc}") from None
        r = signed.receipt
        if (r.run_id, r.round, r.site) != (row.run_id, row.round, row.site):
            raise ReceiptInvalid(f"{where}: receipt names another run, round or site")
        if r.policy_sha256 != policy_sha:
            raise ReceiptInvalid(f"{where}: policy hash {r.policy_sha256[:16]}… is not the "
                                 f"run's {policy_sha[:16]}…")
        out.append(r)
    return out


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
        recomputed = ia.cumulative_epsilons(
            [(r.noise_multiplier, r.sample_rate, r.steps) for r in rs], rs[0].delta,
            rs[0].accountant)
        for r, eps in zip(rs, recomputed, strict=True):
            checks.append(_check_one(r, eps, consortium_ceiling))
    return checks


def _check_one(r: Receipt, eps: float, consortium_ceiling: float) -> EpsilonCheck:
    where = f"receipt of site {r.site} run {r.run_id} round {r.round}"
    if not ia.agrees(r.epsilon, eps):
        raise EpsilonMismatch(f"{where}: claimed ε={r.epsilon:.6f} but dp_accounting gives "
                              f"{eps:.6f} ({r.accountant}, δ={r.delta:g}); tolerance "
                              f"{ia.TOLERANCE:.0%}")
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


def _policy(start: AuditEntry) -> dict[str, object]:
    text, sha = start.payload["policy_json"], start.payload["policy_sha256"]
    if hashlib.sha256(text.encode()).hexdigest() != sha:
        raise ChainBroken(f"audit_log entry seq={start.seq} (run-start): the policy does not "
                          f"match its hash {sha[:16]}…")
    return dict(json.loads(text))


def verify_store(path: Path | str, *, run_id: str | None = None,
                 consortium_key: Ed25519PublicKey | None = None) -> VerificationResult:
    """Verify the whole chain, and the receipts and ε of one run (all runs when None).

    Raises
    ------
    AuditVerificationError
        A subclass naming the first broken record.
    """
    try:
        with AuditLog(path, readonly=True) as log:
            entries = log.entries()
            key = _consortium_key(entries, consortium_key)
            verify_chain(entries, key)
            ring, fps = _site_keys(entries)
            starts = {e.run_id: e for e in entries if e.kind == "run-start"}
            if run_id is not None and run_id not in starts:
                raise AuditVerificationError(f"run {run_id}: no run-start entry in the audit log")
            result = VerificationResult(entries=len(entries), consortium_fingerprint=fingerprint(
                key), site_fingerprints=fps)
            for rid, start in starts.items():
                if rid is None or (run_id is not None and rid != run_id):
                    continue
                policy = _policy(start)
                receipts = _receipts(log, entries, ring, rid, start.payload["policy_sha256"])
                ceiling = float(policy["epsilon_ceiling"])  # type: ignore[arg-type]
                result.checks += check_epsilons(receipts, ceiling)
                result.runs.append(rid)
            return result
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ChainBroken(f"the audit log is unreadable or malformed: {exc!r}") from None
    except Exception as exc:
        if isinstance(exc, AuditVerificationError):
            raise
        raise ChainBroken(f"the store cannot be read: {exc}") from None
