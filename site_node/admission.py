"""Admission control: a site refuses work that would pass its per-run or lifetime ε ceiling.

Before a run trains, the site projects what the rest of the planned run would spend (the planned
rounds × the mechanism, composed with everything already in its ledger) and refuses the run if
either ceiling would be passed. Before every later round it checks the next round alone. A
refusal happens before any training, so nothing is spent and nothing is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from site_node.accounting import Mechanism, SiteAccountant
from site_node.ledger import SiteLedger
from site_node.training import BudgetExceeded

log = logging.getLogger(__name__)


class AdmissionRefused(BudgetExceeded):
    """The site refused a run or a round before training; nothing was spent."""


@dataclass(frozen=True)
class Ceilings:
    """The ε ceilings a site enforces, at δ ``delta``."""

    delta: float
    epsilon_ceiling: float
    lifetime_epsilon_ceiling: float


@dataclass(frozen=True)
class Projection:
    """What the site would have spent after ``rounds`` more rounds of ``mechanism``."""

    rounds: int
    run_epsilon: float
    lifetime_epsilon: float


def _composed(history: list[tuple[float, float, int]], mechanism: Mechanism, rounds: int,
              delta: float) -> float:
    acc = SiteAccountant(accountant=mechanism.accountant, history=history)
    for _ in range(rounds):
        acc.record(mechanism)
    return acc.epsilon(delta)


def project(
    ledger: SiteLedger, run_id: str, mechanism: Mechanism, rounds: int, delta: float
) -> Projection:
    """Compose the ledger's events (this run's, and all) with ``rounds`` more rounds."""
    run_history = [e.mechanism.event for e in ledger.events(run_id)]
    all_history = [e.mechanism.event for e in ledger.events()]
    return Projection(
        rounds=rounds,
        run_epsilon=_composed(run_history, mechanism, rounds, delta),
        lifetime_epsilon=_composed(all_history, mechanism, rounds, delta),
    )


def admit(
    ledger: SiteLedger, *, site: str, run_id: str, mechanism: Mechanism, rounds: int,
    ceilings: Ceilings,
) -> Projection:
    """Refuse (raise) if ``rounds`` more rounds of ``mechanism`` would pass a ceiling.

    Raises
    ------
    AdmissionRefused
        Naming the ceiling, the projected ε and the limit. Nothing is recorded.
    """
    p = project(ledger, run_id, mechanism, rounds, ceilings.delta)
    what = f"{rounds} more round(s)" if rounds != 1 else "the next round"
    if p.run_epsilon > ceilings.epsilon_ceiling:
        raise AdmissionRefused(
            f"site {site} refuses run {run_id}: {what} would bring this run's ε to "
            f"{p.run_epsilon:.4f} > per-run ceiling {ceilings.epsilon_ceiling:g} "
            f"(δ={ceilings.delta:g}); nothing was spent"
        )
    if p.lifetime_epsilon > ceilings.lifetime_epsilon_ceiling:
        raise AdmissionRefused(
            f"site {site} refuses run {run_id}: {what} would bring its lifetime ε to "
            f"{p.lifetime_epsilon:.4f} > lifetime ceiling {ceilings.lifetime_epsilon_ceiling:g} "
            f"(δ={ceilings.delta:g}); nothing was spent"
        )
    log.info("site %s admits %s of run %s: run ε %.4f, lifetime ε %.4f", site, what, run_id,
             p.run_epsilon, p.lifetime_epsilon)
    return p


def admit_round(
    ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
    mechanism: Mechanism, ceilings: Ceilings,
) -> Projection:
    """Run admission at the first round the site takes part in, round admission after it."""
    first = not ledger.events(run_id)
    rounds = max(1, rounds_planned - rnd + 1) if first else 1
    return admit(ledger, site=site, run_id=run_id, mechanism=mechanism, rounds=rounds,
                 ceilings=ceilings)
