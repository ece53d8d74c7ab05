"""Admission: project the rest of the run at the first round, one round later; refusal is final."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from site_node.errors import Refusal
from site_node.privacy.accountant import epsilon
from site_node.privacy.admission import Ceilings, admit, project
from site_node.privacy.ledger import SiteLedger
from site_node.protocol.mechanism import Mechanism
from tests.site_node.factories import DELTA, mech

M = mech()


def ceiling_for(rounds: int, m: Mechanism = M) -> float:
    """A ceiling that exactly ``rounds`` rounds of ``m`` fit under, and not one more."""
    return epsilon([m] * rounds, delta=DELTA, accountant="rdp") + 1e-6


def admit_round(ledger: SiteLedger, rnd: int, planned: int, c: Ceilings,
                run_id: str = "r") -> None:
    admit(ledger, site="hungary", run_id=run_id, rnd=rnd, rounds_planned=planned, mechanism=M,
          ceilings=c)


def train(ledger: SiteLedger, rnd: int, run_id: str = "r") -> None:
    ledger.record(run_id=run_id, rnd=rnd, policy_sha256="p", mechanism=M, delta=DELTA)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SiteLedger]:
    with SiteLedger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def test_a_run_is_admitted_whole_then_each_round_is_checked(ledger: SiteLedger) -> None:
    c = Ceilings(delta=DELTA, epsilon_ceiling=ceiling_for(3), lifetime_epsilon_ceiling=100)
    for rnd in (1, 2, 3):
        admit_round(ledger, rnd, 3, c, run_id="fits")
        train(ledger, rnd, run_id="fits")
    with pytest.raises(Refusal, match="the next round"):
        admit_round(ledger, 4, 4, c, run_id="fits")
    assert len(ledger.events("fits")) == 3


def test_the_first_round_projects_the_whole_rest_of_the_run(ledger: SiteLedger) -> None:
    c = Ceilings(delta=DELTA, epsilon_ceiling=ceiling_for(3), lifetime_epsilon_ceiling=100)
    with pytest.raises(Refusal, match=r"4 more round\(s\).*per-run ceiling.*nothing was spent"):
        admit_round(ledger, 1, 4, c)
    assert ledger.events() == []
    # Joining a run at its third round of four projects the two rounds left.
    proj = admit(ledger, site="hungary", run_id="late", rnd=3, rounds_planned=4, mechanism=M,
                 ceilings=c)
    assert proj.rounds == 2
    assert proj.run_epsilon == pytest.approx(epsilon([M] * 2, delta=DELTA, accountant="rdp"))


def test_a_refusal_is_final_for_the_run_even_when_the_rest_would_fit(ledger: SiteLedger
                                                                      ) -> None:
    c = Ceilings(delta=DELTA, epsilon_ceiling=ceiling_for(3), lifetime_epsilon_ceiling=100)
    with pytest.raises(Refusal):
        admit_round(ledger, 1, 4, c)  # four rounds do not fit
    # At round 2 only three rounds remain, which would fit; the site still refuses.
    assert project(ledger, "r", M, 3, DELTA).run_epsilon <= c.epsilon_ceiling
    for rnd in (2, 3, 4):
        with pytest.raises(Refusal, match=r"refused run r in round 1 and keeps refusing it"):
            admit_round(ledger, rnd, 4, c)
    assert ledger.events() == []
    assert [r.round for r in ledger.refusals("r")] == [1, 2, 3, 4]
    # Another run is judged on its own.
    admit_round(ledger, 1, 3, c, run_id="other")


def test_admission_refuses_a_run_that_would_pass_the_lifetime_ceiling(ledger: SiteLedger
                                                                       ) -> None:
    for rnd in (1, 2, 3):
        train(ledger, rnd, run_id="old")
    before = ledger.events()
    c = Ceilings(delta=DELTA, epsilon_ceiling=100, lifetime_epsilon_ceiling=ceiling_for(5))
    with pytest.raises(Refusal, match=r"lifetime ε to .* > lifetime ceiling"):
        admit_round(ledger, 1, 3, c, run_id="new")  # 3 + 3 rounds > 5
    assert ledger.events() == before
    (refusal,) = ledger.refusals()
    assert refusal.run_id == "new" and "lifetime ceiling" in refusal.reason
    proj = admit(ledger, site="s", run_id="new2", rnd=1, rounds_planned=2, mechanism=M,
                 ceilings=c)
    assert proj.lifetime_epsilon == pytest.approx(
        epsilon([M] * 5, delta=DELTA, accountant="rdp"))


def test_the_refusal_states_delta_and_the_numbers(ledger: SiteLedger) -> None:
    c = Ceilings(delta=DELTA, epsilon_ceiling=0.01, lifetime_epsilon_ceiling=100)
    with pytest.raises(Refusal) as info:
        admit_round(ledger, 1, 2, c)
    projected = epsilon([M] * 2, delta=DELTA, accountant="rdp")
    assert f"{projected:.4f} > per-run ceiling 0.01 (δ=1e-05)" in str(info.value)
    assert "site hungary refuses run r" in str(info.value)
