"""The audit trail of one run: what the consortium server logs, and when.

:class:`RunAudit` is the workflow's only contact with the audit log. At run start it enrols the
consortium key and (embedded simulation default only) every member site's receipt key, and logs
the policy and membership; after every round it verifies and stores each site's receipt and logs
the round or its failure; at the end it logs why the run stopped.

Deployment uses explicit enrolment (``consortium audit enrol``), never automatic: the server
cannot reach a hospital's disk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consortium.audit_log import CONSORTIUM_ROLE, SITE_ROLE, AuditLog
from consortium.keys import (
    CONSORTIUM_KEY_FILE,
    SITE_KEY_FILE,
    consortium_home,
    load_or_create_key,
    site_state_dir,
)
from consortium.receipt import ReceiptError, SignedReceipt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFacts:
    """What the audit log records about a run at its start."""

    run_id: str
    engine: str
    policy_sha256: str
    policy_json: str
    sites: tuple[str, ...]
    rounds_planned: int


class RunAudit:
    """Audit logging for one run.

    Parameters
    ----------
    store_path : Path
        The run store file (the audit tables live in it).
    facts : RunFacts
        The run being audited.
    home : Path, optional
        The consortium home (default :func:`consortium.keys.consortium_home`).
    """

    def __init__(self, store_path: Path, facts: RunFacts, home: Path | None = None) -> None:
        self.home = home or consortium_home()
        self.facts = facts
        key = load_or_create_key(self.home / CONSORTIUM_KEY_FILE)
        self.log = AuditLog(store_path, key=key)
        self.log.enrol(CONSORTIUM_ROLE, "consortium", key.public_key(), facts.run_id)

    def start(self) -> None:
        """Enrol simulation site keys, then log the run start with policy and membership."""
        f = self.facts
        if f.engine == "simulation":
            for site in f.sites:
                key = load_or_create_key(site_state_dir(site, self.home) / SITE_KEY_FILE)
                self.log.enrol(SITE_ROLE, site, key.public_key(), f.run_id)
        self.log.append("run-start", {"engine": f.engine, "policy_sha256": f.policy_sha256,
                                      "policy_json": f.policy_json, "sites": list(f.sites),
                                      "rounds_planned": f.rounds_planned}, f.run_id)

    def round(self, rnd: int, fits: Sequence[tuple[str, Mapping[str, Any]]], failures: int,
              status: str, reason: str | None = None) -> int:
        """Accept every site's receipt of round ``rnd`` and log the round; returns accepted."""
        accepted = []
        for site, metrics in fits:
            try:
                signed = SignedReceipt.from_wire(metrics)
                if signed.receipt.site != site or signed.receipt.round != rnd:
                    raise ReceiptError(f"receipt names site {signed.receipt.site!r} round "
                                       f"{signed.receipt.round}, reported by {site!r} in {rnd}")
            except ReceiptError as exc:
                self.log.security_event(self.facts.run_id, f"receipt rejected: {exc}",
                                        site=site, rnd=rnd)
                continue
            try:
                self.log.accept_receipt(self.facts.run_id, signed)  # logs its own rejections
            except ReceiptError:
                continue
            accepted.append(site)
        kind = "round" if reason is None else "round-failed"
        self.log.append(kind, {"round": rnd, "status": status, "sites_with_receipt": accepted,
                               "failures": failures, "reason": reason}, self.facts.run_id)
        return len(accepted)

    def finish(self, status: str, reason: str) -> None:
        """Log why the run stopped, and close the log."""
        self.log.append("run-stop", {"status": status, "reason": reason}, self.facts.run_id)
        self.log.close()


def audit_for(run: Any, store_path: Path) -> RunAudit:
    """Start the audit trail of a run from its :class:`~consortium.records.RunRecord`."""
    facts = RunFacts(run_id=run.run_id, engine=run.engine, policy_sha256=run.policy_sha256,
                     policy_json=run.policy_json, sites=tuple(run.sites),
                     rounds_planned=run.rounds_planned)
    audit = RunAudit(store_path, facts)
    audit.start()
    return audit
