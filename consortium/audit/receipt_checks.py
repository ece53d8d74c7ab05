"""Checking the receipts of one run, as :func:`consortium.audit.verify.verify_store` does.

Each receipt logged for the run must be identical in the ``receipts`` table and in its audit
entry, canonical, signed by the key its site had enrolled *when the receipt was logged*, and about
that run, round and site, under the run's policy hash and task hash, with the receipt's ε in its
row's ``epsilon`` column (what the export shows). A version-1 receipt
(written before tasks existed, with no task hash) is accepted only in a run whose run-start entry
records no task either; in a run with a task it cannot say which task it trained, and is refused.
"""

from __future__ import annotations

from consortium.audit.figures import same
from consortium.audit.log import RECEIPT, AuditEntry, AuditLog, StoredReceipt
from consortium.audit.payload import payload
from consortium.audit.registry import KeyRegistry
from consortium.errors import ReceiptInvalid, RowNotCovered, SignatureInvalid, UnknownSiteKey
from site_node.protocol.errors import InvalidReceiptSignature, ReceiptError
from site_node.protocol.receipt import Receipt, SignedReceipt


def _check_task(r: Receipt, task_sha: str | None, where: str) -> None:
    if r.version < 2:
        if task_sha is not None:
            raise ReceiptInvalid(f"{where}: a version-{r.version} receipt names no task, but run "
                                 f"{r.run_id} trains task {task_sha[:16]}…; version-1 receipts "
                                 "are accepted only from runs recorded before tasks existed")
        return
    if r.task_sha256 != task_sha:
        shown = f"{task_sha[:16]}…" if task_sha else "none (a run recorded before tasks)"
        raise ReceiptInvalid(f"{where}: task hash {r.task_sha256[:16]}… is not the run's "
                             f"task {shown}")


def _one_receipt(e: AuditEntry, row: StoredReceipt, registry: KeyRegistry, policy_sha: str,
                 task_sha: str | None) -> Receipt:
    where = f"receipt in audit_log entry seq={e.seq}"
    p = payload(e)
    if (row.receipt_json, row.signature, row.key_fingerprint) != (
            p.get("receipt_json"), p.get("signature"), p.get("key_fingerprint")):
        raise ReceiptInvalid(f"{where}: the receipts table row differs from the log")
    try:
        signed = SignedReceipt.from_parts(str(p["receipt_json"]), str(p["signature"]))
        enrolled = registry.key_at(signed.receipt.site, e.seq)
        if enrolled.fingerprint != p["key_fingerprint"]:
            raise ReceiptInvalid(f"{where}: logged under key {str(p['key_fingerprint'])[:16]}…, "
                                 f"but site {signed.receipt.site} had key "
                                 f"{enrolled.fingerprint[:16]}… enrolled then")
        signed.verify(enrolled.key)
    except InvalidReceiptSignature as exc:
        raise SignatureInvalid(f"{where}: {exc}") from None
    except (ReceiptError, UnknownSiteKey, KeyError) as exc:
        raise ReceiptInvalid(f"{where}: {exc}") from None
    r = signed.receipt
    if (r.run_id, r.round, r.site) != (row.run_id, row.round, row.site) or r.run_id != e.run_id:
        raise ReceiptInvalid(f"{where}: receipt names another run, round or site")
    if not same(r.epsilon, row.epsilon):
        raise RowNotCovered(f"receipts row of run {r.run_id} round {r.round} site {r.site}: "
                            f"column epsilon is {row.epsilon!r}, but its signed receipt says "
                            f"{r.epsilon!r}")
    if r.policy_sha256 != policy_sha:
        raise ReceiptInvalid(f"{where}: policy hash {r.policy_sha256[:16]}… is not the "
                             f"run's {policy_sha[:16]}…")
    _check_task(r, task_sha, where)
    return r


def run_receipts(log: AuditLog, entries: list[AuditEntry], registry: KeyRegistry, run_id: str,
                 policy_sha: str, task_sha: str | None) -> list[Receipt]:
    """Every receipt of ``run_id``, each checked (raises at the first broken one)."""
    in_log = [e for e in entries if e.kind == RECEIPT and e.run_id == run_id]
    table = {r.log_seq: r for r in log.receipts(run_id)}
    if set(table) != {e.seq for e in in_log}:
        raise ReceiptInvalid(f"run {run_id}: the receipts table and the audit log disagree "
                             f"(log seqs {sorted(e.seq for e in in_log)}, table {sorted(table)})")
    return [_one_receipt(e, table[e.seq], registry, policy_sha, task_sha) for e in in_log]
