"""Never silent about a useless model: the majority-class check of a run's last round."""

from __future__ import annotations

import math

import numpy as np

from consortium.store.baseline import final_check
from consortium.store.records import (
    ROUND_FAILED,
    ROUND_OK,
    RoundRecord,
    SiteRoundRecord,
    beats_majority,
)
from site_node.baseline import majority_rate


def _round(rnd: int, figures: dict[str, tuple[float | None, float | None]], *,
           status: str = ROUND_OK) -> RoundRecord:
    return RoundRecord(round=rnd, status=status, started_at="s", finished_at="f",  # type: ignore[arg-type]
                       duration_s=1.0, sites=tuple(
                           SiteRoundRecord(site=s, accuracy=a, majority_rate=m)
                           for s, (a, m) in figures.items()))


def test_the_majority_rate_is_the_share_of_the_most_frequent_class() -> None:
    assert majority_rate(np.array([0, 1, 1, 1, 2])) == 0.6
    assert majority_rate(np.array([3, 3])) == 1.0
    assert math.isnan(majority_rate(np.zeros(0, np.int64)))


def test_a_tie_with_the_majority_rate_does_not_beat_it() -> None:
    assert beats_majority(0.57, 0.57) is False
    assert beats_majority(0.5700000000001, 0.57) is False  # float noise is a tie
    assert beats_majority(0.6, 0.57) is True
    assert beats_majority(None, 0.5) is None and beats_majority(0.5, None) is None
    assert beats_majority(float("nan"), 0.5) is None
    assert beats_majority("0.9", 0.5) is None  # type: ignore[arg-type]  # a corrupted store


def test_a_model_at_the_majority_rate_everywhere_is_flagged_useless() -> None:
    check = final_check([_round(1, {"a": (0.9, 0.5)}),
                         _round(2, {"a": (0.57, 0.57), "b": (0.6, 0.6)})])
    assert check.round == 2 and check.flagged == ("a", "b") and check.useless
    assert check.summary().startswith("WARNING round 2: the model does not beat the "
                                      "majority-class rate at any site")
    assert check.to_json()["sites"] == {
        "a": {"accuracy": 0.57, "majority_rate": 0.57, "beats_majority": False},
        "b": {"accuracy": 0.6, "majority_rate": 0.6, "beats_majority": False}}


def test_one_flagged_site_is_named_and_a_failed_last_round_is_skipped() -> None:
    check = final_check([_round(1, {"a": (0.9, 0.5), "b": (0.4, 0.7), "c": (None, None)}),
                         _round(2, {}, status=ROUND_FAILED)])
    assert check.round == 1 and check.flagged == ("b",) and not check.useless
    assert check.summary() == ("WARNING round 1: the model does not beat the majority-class "
                               "rate at b")
    assert [s.site for s in check.sites] == ["a", "b"]


def test_a_good_model_old_rows_and_no_round() -> None:
    assert final_check([_round(1, {"a": (0.9, 0.5)})]).summary() == (
        "round 1: the model beats the majority-class rate at every site")
    assert "no site reported" in final_check([_round(1, {"a": (0.9, None)})]).summary()
    assert final_check([]).summary() == "no completed round: no model to judge"
