"""The auditor's report of a run: a JSON document, rendered to HTML by :mod:`.html`.

It says who took part, under which policy (with its hash) and in which mode, every site's ε per
round with its ceiling and mechanism, every refusal and security event, what the consortium
server sees in clear and what is masked, the result of
:func:`consortium.audit.verify.verify_store`, and the key fingerprints needed to check it.

No torch, no Opacus, no Flower: the dashboard builds the report too.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consortium.audit import accountant as ia
from consortium.audit.log import SECURITY, AuditEntry, AuditLog, StoredReceipt
from consortium.audit.registry import EnrolledKey, KeyRegistry
from consortium.audit.trail import ROUND_FAILED, RUN_STOP
from consortium.audit.verify import VerificationResult, verify_store
from consortium.errors import AuditVerificationError, SecurityEventsFound
from consortium.store.baseline import final_check
from consortium.store.database import Database
from consortium.store.records import MODE_DEMO
from consortium.store.run_store import RunStore
from site_node.protocol.errors import ProtocolError, ReceiptError

REPORT_VERSION = 2

THREAT_MODEL: dict[str, Any] = {
    "in_clear": [
        "each site's signed privacy receipt: site id, run, round, policy hashes, the task "
        "hash, the DP-SGD "
        "mechanism (noise multiplier, sampling rate, steps, clipping norm, accountant), δ, its "
        "cumulative ε in the run and over its lifetime, its ceilings, its number of training "
        "examples (also the weight of its update) and the SHA-256 of its unmasked update (a "
        "commitment: it does not reveal the update)",
        "the site id each reply claims, and a refusing site's reason",
        "each site's evaluation loss, accuracy and number of test examples",
        "which sites took part in each round, and which refused or failed",
        "the global model after each round",
    ],
    "masked": [
        "each site's model update: SecAgg+ masks it; the server learns only the weighted sum of "
        "the updates of the sites that took part (example-count weighted)",
    ],
    "notes": [
        "Model updates are also protected by DP-SGD at every site, so even the aggregate is "
        "differentially private; ε is stated per site at its own δ.",
        "SecAgg+ masks come from ChaCha20 keyed by HKDF-SHA256 of the whole shared secret (the "
        "product replaces Flower's 32-bit-seeded Mersenne Twister generator on both sides).",
        "Receipts prove what each site attests; they cannot prove a site ran the mechanism it "
        "claims. The consortium key signs the log; an auditor must obtain the fingerprints below "
        "out of band (not from this report) to rely on them.",
        "In a local-demo run one machine played every hospital and the demonstration created "
        "the sites' keys: its receipts prove only what that machine attests.",
    ],
}


def _verification(path: Path, run_id: str, head: Path | None, require_head: bool
                  ) -> tuple[dict[str, Any], VerificationResult | None]:
    base: dict[str, Any] = {"tolerance": ia.TOLERANCE, "security_events": []}
    try:
        result = verify_store(path, run_id=run_id, head=head, require_head=require_head)
    except SecurityEventsFound as exc:
        partial = exc.result if isinstance(exc.result, VerificationResult) else None
        events = [{"seq": s.seq, "reason": s.reason}
                  for s in (partial.security_events if partial else [])]
        return {**base, "ok": False, "error_kind": type(exc).__name__, "error": str(exc),
                "security_events": events}, partial
    except AuditVerificationError as exc:
        return {**base, "ok": False, "error_kind": type(exc).__name__, "error": str(exc)}, None
    return {**base, "ok": True, "error_kind": None, "error": None, "entries": result.entries,
            "checks": len(result.checks), "head": result.head_path,
            "head_seq": result.head_seq}, result


def _receipt_rows(stored: list[StoredReceipt], result: VerificationResult | None
                  ) -> list[dict[str, Any]]:
    independent = {}
    if result is not None:
        independent = {(c.site, c.round): c.independent for c in result.checks}
    rows = []
    for s in stored:
        try:
            r = s.signed().receipt
        except ReceiptError as exc:
            rows.append({"site": s.site, "round": s.round, "malformed": str(exc)})
            continue
        rows.append({
            "site": r.site, "round": r.round, "epsilon": r.epsilon,
            "independent_epsilon": independent.get((r.site, r.round)),
            "epsilon_ceiling": r.epsilon_ceiling, "lifetime_epsilon": r.lifetime_epsilon,
            "lifetime_epsilon_ceiling": r.lifetime_epsilon_ceiling, "delta": r.delta,
            "noise_multiplier": r.noise_multiplier, "sample_rate": r.sample_rate,
            "steps": r.steps, "max_grad_norm": r.max_grad_norm, "accountant": r.accountant,
            "privacy_unit": r.privacy_unit, "num_examples": r.num_examples,
            "update_sha256": r.update_sha256,
            "site_policy_sha256": r.site_policy_sha256, "task_sha256": r.task_sha256,
            "key_fingerprint": s.key_fingerprint,
            "issued_at": r.issued_at,
        })
    return sorted(rows, key=lambda x: (x["round"], x["site"]))


def _run_section(store: RunStore, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run = store.get_run(run_id)
    rounds = store.rounds(run_id)
    info = {"run_id": run.run_id, "started_at": run.started_at, "finished_at": run.finished_at,
            "status": run.status, "stop_reason": run.stop_reason, "engine": run.engine,
            "mode": run.mode, "local_demo": run.mode == MODE_DEMO,
            "rounds_planned": run.rounds_planned, "delta": run.delta,
            "epsilon_ceiling": run.epsilon_ceiling, "sites": list(run.sites),
            "policy_sha256": run.policy_sha256, "policy": _loads(run.policy_json),
            "task_sha256": run.task_sha256,
            "task": _loads(run.task_json) if run.task_json is not None else None,
            "choice": _loads(run.choice_json) if run.choice_json is not None else None,
            "majority_check": final_check(rounds).to_json()}
    rows = [{"round": r.round, "status": r.status, "policy_sha256": r.policy_sha256,
             "failure_reason": r.failure_reason, "accuracy_mean": r.accuracy_mean,
             "trained": [s.site for s in r.sites if s.trained],
             "refused": {s.site: s.refusal for s in r.sites if s.refusal}}
            for r in rounds]
    return info, rows


def _loads(text: str) -> Any:
    """A stored JSON value, or a note that it is unreadable (the report still renders)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {"unreadable": str(text)[:200]}


def _enrolled(entries: list[AuditEntry]) -> list[EnrolledKey]:
    try:
        return KeyRegistry.from_entries(entries).all()
    except (ValueError, KeyError, TypeError, ProtocolError):
        return []  # verification names the malformed enrolment


def build_report(path: Path | str, run_id: str | None = None, *, head: Path | None = None,
                 require_head: bool = True) -> dict[str, Any]:
    """The auditor's report of one run (the latest when ``run_id`` is None); ``head`` and
    ``require_head`` as for :func:`~consortium.audit.verify.verify_store`.

    Raises
    ------
    consortium.errors.StoreError
        If the store or the run does not exist.
    """
    path = Path(path).expanduser().resolve()
    with closing(Database(path, readonly=True)) as db:
        store = RunStore(db)
        run_id = run_id or store.latest_run_id()
        run, rounds = _run_section(store, run_id)
        log = AuditLog(db)
        stored = log.receipts(run_id)
        entries = log.entries()
        events = [{"seq": e.seq, "kind": e.kind, "created_at": e.created_at,
                   "payload": _loads(e.payload_json)} for e in entries
                  if e.run_id == run_id and e.kind in (SECURITY, ROUND_FAILED, RUN_STOP)]
        enrolled = _enrolled(entries)
        first = _loads(entries[0].payload_json) if entries else {}
        consortium_fp = first.get("fingerprint") if isinstance(first, dict) else None
    verification, result = _verification(path, run_id, head, require_head)
    receipts = _receipt_rows(stored, result)
    sites = sorted({r["site"] for r in receipts} | set(run["sites"]))
    return {
        "report_version": REPORT_VERSION,
        "generated_at": datetime.now(UTC).isoformat(), "store": str(path), "run": run,
        "participants": [{"site": s, "rounds": sorted(r["round"] for r in receipts
                                                      if r["site"] == s)} for s in sites],
        "rounds": rounds, "receipts": receipts, "events": events,
        "verification": verification, "threat_model": THREAT_MODEL,
        "fingerprints": {
            "consortium": [consortium_fp] if consortium_fp else [],
            "sites": {k.site: k.fingerprint for k in enrolled},
            "history": [{"site": k.site, "fingerprint": k.fingerprint, "mode": k.mode,
                         "enrolled_at": k.enrolled_at, "ended": k.ended_reason}
                        for k in enrolled],
            "definition": "SHA-256 of the raw 32-byte Ed25519 public key, hex"},
    }


def write_report(report: dict[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``audit-<run>.json`` and ``audit-<run>.html`` into ``out_dir``."""
    from consortium.audit.html import render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"audit-{report['run']['run_id']}"
    json_path, html_path = out / f"{stem}.json", out / f"{stem}.html"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return html_path, json_path
