"""Round records from the server's judgement, and which aggregates may become the model."""

from __future__ import annotations

import io

import numpy as np
import pytest

from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement
from consortium.store.records import ROUND_FAILED, ROUND_OK

CLIP = 8.0


def weights(*values: float) -> list[np.ndarray]:
    return [np.array(values, dtype=np.float32), np.zeros((2, 2), dtype=np.float32)]


def test_a_normal_aggregate_is_accepted() -> None:
    assert rr.aggregate_problem(weights(0.1, -0.3, 7.9), CLIP) is None
    assert rr.aggregate_problem(weights(CLIP, -CLIP), CLIP) is None  # the range is inclusive
    assert rr.aggregate_problem([np.zeros(0, np.float32)], CLIP) is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_aggregate_is_refused(bad: float) -> None:
    problem = rr.aggregate_problem(weights(0.1, bad), CLIP)
    assert problem is not None and "not finite" in problem


@pytest.mark.parametrize("peak", [8.01, -9.0, 1e6])
def test_an_aggregate_beyond_the_clipping_range_is_refused(peak: float) -> None:
    problem = rr.aggregate_problem(weights(0.1, peak), CLIP)
    assert problem is not None and "out of range" in problem and "8" in problem


def test_no_aggregate_is_a_problem() -> None:
    assert rr.aggregate_problem(None, CLIP) == "no aggregate was produced"


def test_checkpoint_bytes_round_trip() -> None:
    w = weights(0.5, -0.25)
    blob, digest = rr.checkpoint_bytes(w)
    import hashlib

    assert hashlib.sha256(blob).hexdigest() == digest
    loaded = np.load(io.BytesIO(blob))
    for i, a in enumerate(w):
        np.testing.assert_array_equal(loaded[f"arr_{i}"], a)


def test_a_round_record_weights_means_by_test_examples_and_skips_non_finite() -> None:
    evals = [rr.EvalFigure("a", loss=1.0, accuracy=0.5, num_examples=10),
             rr.EvalFigure("b", loss=3.0, accuracy=1.0, num_examples=30),
             rr.EvalFigure("c", loss=float("nan"), accuracy=float("nan"), num_examples=50)]
    rec = rr.make_round(1, judgement=FitJudgement(refusals={"d": "budget"}), evals=evals,
                        started_at="t", duration_s=1.0, policy_sha256="ab", failure=None)
    assert rec.status == ROUND_OK
    assert rec.accuracy_mean == pytest.approx(0.75)
    assert rec.accuracy_weighted == pytest.approx((0.5 * 10 + 30) / 40)
    assert rec.loss_weighted == pytest.approx((10 + 90) / 40)
    assert [s.site for s in rec.sites] == ["a", "b", "c", "d"]
    d = rec.sites[-1]
    assert d.refusal == "budget" and not d.trained and d.epsilon is None
    failed = rr.make_round(2, judgement=FitJudgement(), evals=[], started_at="t",
                           duration_s=1.0, policy_sha256="ab", failure="halted")
    assert failed.status == ROUND_FAILED and failed.failure_reason == "halted"
    assert failed.accuracy_mean is None
