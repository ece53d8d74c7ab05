"""Admission control: a site refuses work that would pass its per-run or lifetime ε ceiling.

The rule, one for every round:

- At the first round of a run the site takes part in, it projects the whole rest of the
  planned run (the remaining rounds × the mechanism, composed with everything already in its
  ledger) and refuses the run if either ceiling would be passed.
- At every later round of that run it checks the next round alone.
- A site that refused a run refuses every later round of that run, even if the remaining
  rounds would now fit: a refusal is final for the run, so a site never joins a run part-way.

A refusal happens before any training: nothing is spent, and the refusal itself is recorded
in the ledger's ``refusals`` table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from site_node.errors import Refusal
from site_node.privacy import accountant
from site_node.privacy.ledger import SiteLedger
from site_node.protocol.mechanism import Mechanism

log = logging.getLogger(__name__)


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


def project(ledger: SiteLedger, run_id: str, mechanism: Mechanism, rounds: int,
            delta: float) -> Projection:
    """Compose the ledger's events (this run's, and all) with ``rounds`` more rounds."""
    name = mechanism.accountant
    run = [e.mechanism for e in ledger.events(run_id)]
    every = [e.mechanism for e in ledger.events()]
    return Projection(
        rounds=rounds,
        run_epsilon=accountant.projected(run, mechanism, rounds, delta=delta, accountant=name),
        lifetime_epsilon=accountant.projected(every, mechanism, rounds, delta=delta,
                                              accountant=name),
    )


def _refuse(ledger: SiteLedger, run_id: str, rnd: int, reason: str) -> Refusal:
    ledger.record_refusal(run_id=run_id, rnd=rnd, reason=reason)
    log.warning("%s", reason)
    return Refusal(reason)


def assess(ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
           mechanism: Mechanism, ceilings: Ceilings) -> tuple[Projection | None, str | None]:
    """Decide round ``rnd`` of a run by the rule above without recording anything.

    Returns the projection (None when the run was refused before) and the refusal reason (None
    when the round is admitted). :func:`admit` and the read-only preflight both decide here.
    """
    earlier = ledger.refusals(run_id)
    if earlier:
        return None, (f"site {site} refused run {run_id} in round {earlier[0].round} and keeps "
                      f"refusing it: {earlier[0].reason}")
    first = not ledger.events(run_id)
    rounds = max(1, rounds_planned - rnd + 1) if first else 1
    p = project(ledger, run_id, mechanism, rounds, ceilings.delta)
    what = f"{rounds} more round(s)" if rounds != 1 else "the next round"
    if p.run_epsilon > ceilings.epsilon_ceiling:
        return p, (f"site {site} refuses run {run_id}: {what} would bring this run's ε to "
                   f"{p.run_epsilon:.4f} > per-run ceiling {ceilings.epsilon_ceiling:g} "
                   f"(δ={ceilings.delta:g}); nothing was spent")
    if p.lifetime_epsilon > ceilings.lifetime_epsilon_ceiling:
        return p, (f"site {site} refuses run {run_id}: {what} would bring its lifetime ε to "
                   f"{p.lifetime_epsilon:.4f} > lifetime ceiling "
                   f"{ceilings.lifetime_epsilon_ceiling:g} (δ={ceilings.delta:g}); nothing was "
                   "spent")
    return p, None


def admit(ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
          mechanism: Mechanism, ceilings: Ceilings) -> Projection:
    """Admit round ``rnd`` of a run, or refuse it (raise) by the rule above.

    Raises
    ------
    Refusal
        Naming the ceiling, the projected ε and the limit; nothing is spent.
    """
    p, refusal = assess(ledger, site=site, run_id=run_id, rnd=rnd, rounds_planned=rounds_planned,
                        mechanism=mechanism, ceilings=ceilings)
    if refusal is not None:
        raise _refuse(ledger, run_id, rnd, refusal)
    assert p is not None
    log.info("site %s admits %s of run %s: run ε %.4f, lifetime ε %.4f", site,
             f"{p.rounds} more round(s)" if p.rounds != 1 else "the next round", run_id,
             p.run_epsilon, p.lifetime_epsilon)
    return p
