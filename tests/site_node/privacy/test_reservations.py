"""Reservations: what a run under way was admitted for counts against every other run's lifetime
projection until it is recorded or released."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from site_node.errors import Refusal
from site_node.privacy import reservations
from site_node.privacy.accountant import epsilon
from site_node.privacy.admission import Ceilings, admit
from site_node.privacy.ledger import SiteLedger
from tests.site_node.factories import DELTA, mech

M = mech()


def ceiling_for(rounds: int) -> float:
    """A lifetime ceiling that exactly ``rounds`` rounds of ``M`` fit under, and not one more."""
    return epsilon([M] * rounds, delta=DELTA, accountant="rdp") + 1e-6


def ceilings(lifetime_rounds: int) -> Ceilings:
    return Ceilings(delta=DELTA, epsilon_ceiling=100.0,
                    lifetime_epsilon_ceiling=ceiling_for(lifetime_rounds))


def admit_round(ledger: SiteLedger, run_id: str, rnd: int, planned: int, c: Ceilings) -> None:
    admit(ledger, site="hungary", run_id=run_id, rnd=rnd, rounds_planned=planned, mechanism=M,
          ceilings=c)


def record(ledger: SiteLedger, run_id: str, rnd: int) -> None:
    """What the guard does after training: the event and the reservation, in one transaction."""
    with ledger.transaction():
        ledger.record(run_id=run_id, rnd=rnd, policy_sha256="p", mechanism=M, delta=DELTA)
        reservations.advance(ledger, run_id=run_id, recorded_round=rnd)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SiteLedger]:
    with SiteLedger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def held(ledger: SiteLedger) -> dict[str, int]:
    return {r.run_id: r.remaining for r in reservations.reservations(ledger)}


def test_admission_reserves_the_rest_of_the_run_and_recording_shrinks_it(
    ledger: SiteLedger
) -> None:
    c = ceilings(6)
    admit_round(ledger, "a", 1, 3, c)
    assert held(ledger) == {"a": 3}
    record(ledger, "a", 1)
    assert held(ledger) == {"a": 2}
    admit_round(ledger, "a", 2, 3, c)
    record(ledger, "a", 2)
    admit_round(ledger, "a", 3, 3, c)
    record(ledger, "a", 3)
    assert held(ledger) == {}  # released by the last planned round


def test_a_second_run_is_refused_counting_the_first_runs_reserved_rounds(
    ledger: SiteLedger
) -> None:
    c = ceilings(4)
    admit_round(ledger, "a", 1, 3, c)  # nothing recorded yet: only the reservation
    with pytest.raises(Refusal, match=r"lifetime ceiling .*3 round\(s\) reserved by 1 other"):
        admit_round(ledger, "b", 1, 2, c)
    assert held(ledger) == {"a": 3} and ledger.events() == []
    admit_round(ledger, "c", 1, 1, c)  # one round still fits beside a's three
    assert held(ledger) == {"a": 3, "c": 1}


def test_a_refusal_releases_the_runs_reservation(ledger: SiteLedger) -> None:
    admit_round(ledger, "a", 1, 3, ceilings(3))
    record(ledger, "a", 1)
    with pytest.raises(Refusal):
        admit_round(ledger, "a", 2, 3, ceilings(1))  # the site lowered its ceiling
    assert held(ledger) == {}


def test_a_stale_reservation_is_conservative_until_the_operator_releases_it(
    ledger: SiteLedger
) -> None:
    c = ceilings(3)
    admit_round(ledger, "killed", 1, 3, c)  # its process died before training
    with pytest.raises(Refusal, match="reserved by 1 other run"):
        admit_round(ledger, "next", 1, 1, c)
    assert reservations.release(ledger, "killed") is True
    assert reservations.release(ledger, "killed") is False
    admit_round(ledger, "other", 1, 3, c)
    assert held(ledger) == {"other": 3}


def test_a_skipped_round_shrinks_the_reservation_at_the_next_admission(
    ledger: SiteLedger
) -> None:
    c = ceilings(6)
    admit_round(ledger, "a", 1, 4, c)
    record(ledger, "a", 1)
    admit_round(ledger, "a", 3, 4, c)  # the site missed round 2
    assert held(ledger) == {"a": 2}


STEP = st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans())


@settings(max_examples=40, deadline=None)
@given(plans=st.fixed_dictionaries({r: st.integers(1, 4) for r in "abc"}),
       steps=st.lists(STEP, max_size=30), lifetime_rounds=st.integers(1, 8))
def test_interleaved_runs_never_pass_the_lifetime_ceiling(
    plans: dict[str, int], steps: list[tuple[str, bool]], lifetime_rounds: int
) -> None:
    """Any interleaving of admissions, recorded rounds and rounds admitted but never recorded
    (a killed trainer): the recorded events never pass the lifetime ceiling."""
    c = ceilings(lifetime_rounds)
    nxt = dict.fromkeys(plans, 1)
    with tempfile.TemporaryDirectory() as tmp, SiteLedger(Path(tmp) / "l.sqlite") as ledger:
        for run, trains in steps:
            if nxt[run] > plans[run]:
                continue
            try:
                admit_round(ledger, run, nxt[run], plans[run], c)
            except Refusal:
                nxt[run] = plans[run] + 1
                continue
            if trains:
                record(ledger, run, nxt[run])
            nxt[run] += 1
        spent = epsilon([e.mechanism for e in ledger.events()], delta=DELTA, accountant="rdp")
        assert spent <= c.lifetime_epsilon_ceiling
