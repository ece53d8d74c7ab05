"""The consortium's round loop (unit level): the real workflow, store, audit log, attribution
and judgement, with Flower's SecAgg+ stage and evaluation replaced by the harness's fakes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from consortium.audit.log import AuditLog
from consortium.audit.verify import verify_store
from consortium.errors import SecurityEventsFound
from consortium.run.workflow import HALTED
from consortium.store.export import export_run
from consortium.store.records import (
    ROUND_FAILED,
    ROUND_OK,
    RUN_FAILED,
    RUN_STOPPED,
)
from tests.consortium.run.harness import INITIAL, NEW, Harness, policy_variant

OUT_OF_RANGE = [np.full((3,), 9.5, np.float32), np.zeros((2,), np.float32)]
NON_FINITE = [np.array([0.1, np.nan, 0.2], np.float32), np.zeros((2,), np.float32)]
INFINITE = [np.array([0.1, np.inf, 0.2], np.float32), np.zeros((2,), np.float32)]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def entries(h: Harness, kind: str) -> list[dict[str, object]]:
    return [e.payload for e in h.log.entries(h.plan.run_id) if e.kind == kind]


def test_a_complete_round_adopts_the_aggregate(harness: Harness) -> None:
    h = harness
    record = h.round(1, [h.trained(s, 1) for s in h.sites])
    assert record.status == ROUND_OK and record.failure_reason is None
    assert same(h.global_weights(), NEW)
    blob, _ = h.store.checkpoint(h.plan.run_id, 1)
    saved = np.load(io.BytesIO(blob))
    assert same([saved[f"arr_{i}"] for i in range(len(NEW))], NEW)
    assert {s.site for s in record.sites if s.trained} == set(h.sites)
    assert record.accuracy_mean == pytest.approx(0.75)
    assert h.count("receipts") == len(h.sites)
    (rnd,) = entries(h, "round")
    assert rnd["sites_with_receipt"] == sorted(h.sites) and rnd["rejected"] == 0
    assert entries(h, "security") == []
    result = verify_store(h.plan.store_path, run_id=h.plan.run_id)
    assert len(result.checks) == len(h.sites)


def test_a_rejected_reply_fails_the_round_and_is_a_security_event(harness: Harness) -> None:
    h = harness
    liar = h.trained("cleveland", 1, claim="hungary")  # cleveland's node claims hungary
    record = h.round(1, [liar] + [h.trained(s, 1) for s in h.sites[1:]])
    assert record.status == ROUND_FAILED
    assert record.failure_reason is not None
    assert record.failure_reason.startswith("reply rejected: ")
    assert "enrolled as site 'cleveland'" in record.failure_reason
    assert same(h.global_weights(), INITIAL)  # no new global model
    assert h.count("checkpoints") == 0
    (event,) = entries(h, "security")
    assert event["claimed_site"] == "hungary" and event["node_id"] == h.nodes["cleveland"]
    assert event["round"] == 1
    (failed,) = entries(h, "round-failed")
    assert failed["rejected"] == 1 and failed["reason"] == record.failure_reason
    assert h.count("receipts") == len(h.sites) - 1  # the honest sites spent: kept
    with pytest.raises(SecurityEventsFound, match="claims 'hungary'") as err:
        verify_store(h.plan.store_path)
    assert [e.seq for e in err.value.result.security_events] == [  # type: ignore[attr-defined]
        e.seq for e in h.log.entries() if e.kind == "security"]


@pytest.mark.parametrize(("aggregate", "why"), [(NON_FINITE, "not finite"),
                                                (INFINITE, "not finite"),
                                                (OUT_OF_RANGE, "out of range")])
def test_a_bad_aggregate_is_never_the_new_model(harness: Harness, aggregate: list[np.ndarray],
                                                why: str) -> None:
    h = harness
    record = h.round(1, [h.trained(s, 1) for s in h.sites], aggregate)
    assert record.status == ROUND_FAILED and why in (record.failure_reason or "")
    assert same(h.global_weights(), INITIAL)
    assert h.count("checkpoints") == 0
    (failed,) = entries(h, "round-failed")
    assert why in str(failed["reason"])
    ok = h.round(2, [h.trained(s, 2) for s in h.sites])  # the next good round still counts
    assert ok.status == ROUND_OK and same(h.global_weights(), NEW)
    verify_store(h.plan.store_path)


def test_too_few_sites_trained_fails_the_round_with_the_refusals(harness: Harness) -> None:
    h = harness
    why = "site switzerland refuses: lifetime budget would pass 10.0"
    record = h.round(1, [h.trained(s, 1) for s in h.sites[:3]]
                     + [h.refusal("switzerland", why)])
    assert record.status == ROUND_FAILED
    assert record.failure_reason == (
        f"only 3 site(s) trained, the policy requires min_sites=4; switzerland refused: {why}")
    assert same(h.global_weights(), INITIAL) and h.count("checkpoints") == 0
    (failed,) = entries(h, "round-failed")
    assert failed["refusals"] == {"switzerland": why}
    assert failed["sites_with_receipt"] == sorted(h.sites[:3])
    row = h.store.db.query("SELECT refusal, trained FROM site_rounds WHERE site='switzerland'")
    assert (row[0]["refusal"], row[0]["trained"]) == (why, 0)
    exported = export_run(h.store, h.plan.run_id)
    assert exported["rounds"][0]["sites"]["switzerland"]["refusal"] == why
    assert exported["rounds"][0]["failure_reason"] == record.failure_reason
    verify_store(h.plan.store_path)  # a refusal is not a security event


def test_a_refusal_within_min_sites_is_recorded_and_the_round_completes(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    h = make_harness(policy_path=policy_variant(tmp_path, ("min_sites: 4", "min_sites: 3")))
    record = h.round(1, [h.trained(s, 1) for s in h.sites[:3]]
                     + [h.refusal("switzerland", "budget")])
    assert record.status == ROUND_OK and same(h.global_weights(), NEW)
    (rnd,) = entries(h, "round")
    assert rnd["refusals"] == {"switzerland": "budget"}
    exported = export_run(h.store, h.plan.run_id)
    assert exported["rounds"][0]["sites"]["switzerland"]["refusal"] == "budget"
    assert exported["rounds"][0]["sites"]["switzerland"]["trained"] is False


def test_a_halted_secure_aggregation_fails_the_round(harness: Harness) -> None:
    h = harness
    record = h.round(1, None)
    assert record.status == ROUND_FAILED and record.failure_reason == HALTED
    assert same(h.global_weights(), INITIAL) and h.count("checkpoints") == 0


def test_a_crash_while_recording_leaves_no_part_of_the_round(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    before = {t: h.count(t) for t in ("rounds", "site_rounds", "checkpoints", "receipts",
                                      "audit_log")}
    real = AuditLog.store_receipt
    calls: list[int] = []

    def crash_on_second(self: AuditLog, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AuditLog, "store_receipt", crash_on_second)
    with pytest.raises(RuntimeError, match="power cut"):
        h.round(1, [h.trained(s, 1) for s in h.sites])
    assert {t: h.count(t) for t in before} == before
    assert not h.store.db.conn.in_transaction


def test_a_run_where_no_round_completes_ends_failed(harness: Harness) -> None:
    h = harness
    outcome = h.workflow._rounds(None, h.context, h.recorder,  # type: ignore[arg-type]
                                 h.attribution)
    assert outcome.status == RUN_FAILED and outcome.reason == "no round completed"
    assert (outcome.rounds_ok, outcome.rounds_failed) == (0, h.plan.rounds)
    assert h.fit_calls == h.plan.rounds


def test_the_budget_projection_stops_the_run_before_a_round(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    h = make_harness(policy_path=policy_variant(
        tmp_path, ("target_epsilon: 1.0", "noise_multiplier: 0.3")))
    outcome = h.workflow._rounds(None, h.context, h.recorder,  # type: ignore[arg-type]
                                 h.attribution)
    assert outcome.status == RUN_STOPPED and outcome.reason.startswith("epsilon ceiling")
    assert h.fit_calls == 0 and h.count("rounds") == 0
