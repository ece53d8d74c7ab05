"""The audit trail of one run: what the consortium server logs, and when.

:class:`RunAudit` is the workflow's only contact with the audit log. At run start it logs the
policy, the task, the membership and the mode (``local-demo`` runs say so on every run: the
demonstration provisioned the sites' keys itself); after every round it stores each accepted
receipt, logs every rejected reply as a security event, and logs the round with who trained, who
refused and why, with the round's figures as the run store records them
(:func:`consortium.audit.figures.round_figures`: the ``rounds``, ``site_rounds`` and checkpoint
digest the verifier compares the store's rows with); before the first (or resumed) round it logs
the preflight (who would admit, who refused and why); at the end it logs why the run stopped.
The workflow calls :meth:`RunAudit.round` inside the round's transaction, so the round, its
receipts and its entries commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consortium.audit.figures import round_figures, value
from consortium.audit.log import AuditLog
from consortium.run.attribution import FitJudgement, Rejection, Trained
from consortium.run.preflight import PreflightResult
from consortium.store.records import RoundRecord, RunRecord

log = logging.getLogger(__name__)

RUN_START, RUN_STOP, ROUND, ROUND_FAILED = "run-start", "run-stop", "round", "round-failed"
RUN_RESUME, ROUND_INTERRUPTED = "run-resume", "round-interrupted"
PREFLIGHT = "preflight"


class RunAudit:
    """Audit logging for one run.

    Parameters
    ----------
    log : AuditLog
        The run store's audit log, opened with the consortium's key.
    run : RunRecord
        The run being audited.
    """

    def __init__(self, audit_log: AuditLog, run: RunRecord) -> None:
        self.log = audit_log
        self.run = run

    def start(self) -> None:
        """Log the run start: policy, task, membership, engine and mode (and, for a local run,
        each site's data fingerprint)."""
        r = self.run
        payload: dict[str, object] = {
            "engine": r.engine, "mode": r.mode, "policy_sha256": r.policy_sha256,
            "policy_json": r.policy_json, "task_sha256": r.task_sha256,
            "task_json": r.task_json, "sites": list(r.sites),
            "rounds_planned": r.rounds_planned, "seed": r.seed, "secagg_json": r.secagg_json,
            "example_site_policies": r.example_site_policies}
        if r.data_fingerprints is not None:  # a local run: what each site trained on
            payload["data_fingerprints"] = dict(sorted(r.data_fingerprints.items()))
        if r.choice_json is not None:  # the training settings chosen, how, and their ε cost
            payload["choice_json"] = r.choice_json
        self.log.append(RUN_START, payload, r.run_id)

    def resumed(self, next_round: int) -> None:
        """Log that the run resumes at ``next_round`` (after an interruption or a crash)."""
        self.log.append(RUN_RESUME, {"next_round": next_round}, self.run.run_id)

    def preflight(self, result: PreflightResult) -> None:
        """Log the preflight: who would admit, who refused and why, who did not answer."""
        run_id = self.run.run_id
        for rej in result.rejections:
            self.log.security_event(run_id, f"preflight reply rejected: {rej.reason}",
                                    round=result.round, node_id=rej.node_id,
                                    claimed_site=rej.claimed_site)
        self.log.append(PREFLIGHT, {
            "round": result.round, "admitting": list(result.admitting),
            "refusals": dict(sorted(result.refusals.items())),
            "final_refusals": sorted(result.final), "silent": list(result.silent),
            "rejected": len(result.rejections), "stop_reason": result.stop_reason,
        }, run_id)

    def interrupted(self, rnd: int) -> None:
        """Log that round ``rnd`` was interrupted (sites may have trained and spent in it)."""
        self.log.append(ROUND_INTERRUPTED, {
            "round": rnd, "note": "sites may have trained and spent budget in this round; a "
            "resumed run asks for it again and they re-send its receipts"}, self.run.run_id)

    def round(self, rnd: int, judgement: FitJudgement, *, failures: int, status: str,
              reason: str | None, eval_rejections: Sequence[Rejection] = (),
              record: RoundRecord | None = None, checkpoint_sha256: str | None = None) -> None:
        """Store the round's accepted receipts, log its rejections and the round itself, with
        ``record`` (the round as the run store records it) and its checkpoint's SHA-256.

        A round logged without its record cannot be verified against the store's rows:
        ``consortium audit verify`` fails on it.
        """
        run_id = self.run.run_id
        for t in [*judgement.trained, *self._new(judgement.resent)]:
            self.log.store_receipt(run_id, t.signed, t.key.fingerprint)
        for rej in [*judgement.rejections, *eval_rejections]:
            self.log.security_event(run_id, f"reply rejected: {rej.reason}", round=rnd,
                                    node_id=rej.node_id, claimed_site=rej.claimed_site)
        self.log.append(ROUND if reason is None else ROUND_FAILED, {
            "round": rnd, "status": value(status),
            "sites_with_receipt": sorted(t.site for t in judgement.trained),
            "receipts_resent": sorted(t.site for t in judgement.resent),
            "refusals": dict(sorted(judgement.refusals.items())),
            "rejected": len(judgement.rejections), "failures": failures, "reason": reason,
            **(round_figures(record, checkpoint_sha256) if record is not None else {}),
        }, run_id)

    def _new(self, resent: Sequence[Trained]) -> list[Trained]:
        """Re-sent receipts the log does not hold yet."""
        held = {(r.round, r.site) for r in self.log.receipts(self.run.run_id)}
        return [t for t in resent
                if (t.signed.receipt.round, t.signed.receipt.site) not in held]

    def finish(self, status: str, reason: str) -> None:
        """Log why the run stopped."""
        self.log.append(RUN_STOP, {"status": value(status), "reason": reason}, self.run.run_id)
