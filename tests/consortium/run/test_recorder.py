"""One round-recording path: the federated loop and a site's local-only run both write a round
(its rows, checkpoint, receipts and signed entries) through :mod:`consortium.run.recorder`."""

from __future__ import annotations

import ast
from pathlib import Path

from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement
from consortium.run.recorder import RoundOutcome
from consortium.store.records import ROUND_FAILED, ROUND_OK
from tests.consortium.run.harness import NEW, Harness

ROOT = Path(__file__).resolve().parents[3]
#: The calls that write a round, a run's start or its end; only the recorder makes them (a
#: resume closes or abandons a run by a compare-and-set claim, with its own signed run-stop).
WRITES = {"record_round", "start_run", "finish_run"}
AUDIT_WRITES = {"round", "start"}


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.func.attr in WRITES or (node.func.attr in AUDIT_WRITES and name == "audit"):
                out.add(f"{name}.{node.func.attr}")
    return out


def test_only_the_recorder_writes_rounds_and_run_starts_and_ends() -> None:
    writers = {str(p.relative_to(ROOT)): calls
               for p in sorted((ROOT / "consortium" / "run").glob("*.py")) if (calls := _calls(p))}
    assert set(writers) == {"consortium/run/recorder.py"}, writers


def test_a_round_its_checkpoint_and_its_signed_figures_are_written_together(
        harness: Harness) -> None:
    h = harness
    ok = h.recorder.round(RoundOutcome(round=1, judgement=FitJudgement(), started_at=rr.utc_now(),
                                       t0=0.0, failure=None, model=NEW))
    failed = h.recorder.round(RoundOutcome(round=2, judgement=FitJudgement(),
                                           started_at=rr.utc_now(), t0=0.0, failure="halted",
                                           model=NEW))
    assert (ok.status, failed.status) == (ROUND_OK, ROUND_FAILED)
    assert h.count("checkpoints") == 1  # a failed round keeps the previous model
    signed = [e.payload for e in h.log.entries(h.plan.run_id) if e.kind in ("round",
                                                                            "round-failed")]
    assert [p["round"] for p in signed] == [1, 2]
    assert signed[0]["checkpoint_sha256"] == h.store.checkpoint(h.plan.run_id, 1)[1]
