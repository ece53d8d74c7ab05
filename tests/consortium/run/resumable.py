"""A demonstration run left behind as a crash or Ctrl-C would leave it, ready for ``--resume``.

It is written as the real run writes it: the demonstration sites provisioned and enrolled from
the current site homes, the run record (with each site's data fingerprint) and its signed
run-start entry, and some recorded rounds with their checkpoints.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import numpy as np

from consortium.audit.log import AuditLog
from consortium.audit.trail import RUN_RESUME, RUN_STOP, RunAudit
from consortium.home import open_home
from consortium.run.data_fingerprint import data_fingerprints
from consortium.run.demo import enrol_demo_sites
from consortium.run.inputs import resolve_inputs
from consortium.run.plan import RunPlan, make_plan_from_policy
from consortium.run.rounds import checkpoint_bytes, utc_now
from consortium.store.records import ROUND_OK, RUN_INTERRUPTED, RoundRecord
from consortium.store.run_store import RunStore
from tests.dashboard.stores import run_record

#: An owner on this host whose process is gone (a killed run's).
GONE = f"{socket.gethostname()}:999999999"


def left_behind(store: Path, *, rounds_planned: int = 3, rounds_done: int = 1,
                status: str = RUN_INTERRUPTED, owner: str | None = GONE,
                example: str = "heart-disease", engine: str = "simulation",
                started_at: str = "2026-12-01T00:00:00+00:00") -> RunPlan:
    """A demonstration run of ``example`` as an interrupted or killed process left it."""
    inputs = resolve_inputs(example=example)
    plan = make_plan_from_policy(inputs.policy, inputs.task, store_path=store,
                                 rounds=rounds_planned, seed=0, demo=True,
                                 data_fingerprints=data_fingerprints(inputs.data))
    run = replace(run_record(plan, started_at=started_at, engine=engine), status=status,
                  owner=owner, data_fingerprints=plan.data_fingerprints)
    with RunStore(store) as rs:
        audit_log = AuditLog(rs.db, key=open_home().signing_key())
        enrol_demo_sites(audit_log, plan.loaded.policy.sites, plan.run_id)
        with rs.db.transaction():
            rs.start_run(run)
            RunAudit(audit_log, run).start()
        for rnd in range(1, rounds_done + 1):
            blob, digest = checkpoint_bytes([np.full((2, 3), float(rnd), np.float32)])
            rs.record_round(plan.run_id, RoundRecord(
                round=rnd, status=ROUND_OK, started_at=utc_now(), finished_at=utc_now(),
                duration_s=1.0, accuracy_mean=0.7), checkpoint=blob, checkpoint_sha256=digest)
    return plan


def entries(store: Path, run_id: str) -> list[tuple[str, dict[str, object]]]:
    """A run's ``run-stop`` and ``run-resume`` audit entries: (kind, payload), in order."""
    with RunStore(store, readonly=True) as rs:
        return [(e.kind, e.payload) for e in AuditLog(rs.db).entries(run_id)
                if e.kind in (RUN_STOP, RUN_RESUME)]
