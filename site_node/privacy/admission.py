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

The lifetime projection also counts, as spent, every round other runs under way have been
admitted for and not yet recorded (their reservations, :mod:`site_node.privacy.reservations`):
the read, the decision and this run's reservation are one transaction under the ledger's write
lock, so runs started at the same moment in several processes are admitted one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from site_node.errors import Refusal
from site_node.privacy import accountant, reservations
from site_node.privacy.ledger import SiteLedger
from site_node.privacy.reservations import Reservation
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
            delta: float, *, reserved: Sequence[Reservation] = ()) -> Projection:
    """Compose the ledger's events (this run's, and all) with ``rounds`` more rounds; the
    lifetime figure also counts every round ``reserved`` for other runs as spent."""
    name = mechanism.accountant
    run = [e.mechanism for e in ledger.events(run_id)]
    every = [e.mechanism for e in ledger.events()]
    held = [m for r in reserved for m in r.mechanisms()]
    return Projection(
        rounds=rounds,
        run_epsilon=accountant.projected(run, mechanism, rounds, delta=delta, accountant=name),
        lifetime_epsilon=accountant.projected([*every, *held], mechanism, rounds, delta=delta,
                                              accountant=name),
    )


def _decide(ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
            mechanism: Mechanism, ceilings: Ceilings) -> Projection | str:
    """The projection of an admitted round, or why it is refused (read under the lock)."""
    earlier = ledger.refusals(run_id)
    if earlier:
        return (f"site {site} refused run {run_id} in round {earlier[0].round} and keeps "
                f"refusing it: {earlier[0].reason}")
    first = not ledger.events(run_id)
    rounds = max(1, rounds_planned - rnd + 1) if first else 1
    others = reservations.reservations(ledger, except_run=run_id)
    try:
        p = project(ledger, run_id, mechanism, rounds, ceilings.delta, reserved=others)
    except accountant.MixedUnits as exc:
        return (f"site {site} refuses run {run_id}: its ledger holds {exc.units[0]}-level "
                f"privacy spending and this run is {mechanism.unit}-level; a record-level and "
                "a patient-level ε are never composed into one lifetime ε (use a separate site "
                "home for the other unit); nothing was spent")
    what = f"{rounds} more round(s)" if rounds != 1 else "the next round"
    if p.run_epsilon > ceilings.epsilon_ceiling:
        return (f"site {site} refuses run {run_id}: {what} would bring this run's ε to "
                f"{p.run_epsilon:.4f} > per-run ceiling {ceilings.epsilon_ceiling:g} "
                f"(δ={ceilings.delta:g}); nothing was spent")
    if p.lifetime_epsilon > ceilings.lifetime_epsilon_ceiling:
        held = (f", counting {sum(r.remaining for r in others)} round(s) reserved by "
                f"{len(others)} other run(s) under way" if others else "")
        return (f"site {site} refuses run {run_id}: {what} would bring its lifetime ε to "
                f"{p.lifetime_epsilon:.4f} > lifetime ceiling "
                f"{ceilings.lifetime_epsilon_ceiling:g} (δ={ceilings.delta:g}{held}); nothing "
                "was spent")
    return p


def assess(ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
           mechanism: Mechanism, ceilings: Ceilings) -> tuple[Projection | None, str | None]:
    """Decide round ``rnd`` of a run by the rule above without recording anything.

    Returns the projection (None when the round is refused) and the refusal reason (None
    when the round is admitted). :func:`admit` and the read-only preflight both decide here.
    """
    decision = _decide(ledger, site=site, run_id=run_id, rnd=rnd, rounds_planned=rounds_planned,
                       mechanism=mechanism, ceilings=ceilings)
    return (None, decision) if isinstance(decision, str) else (decision, None)


def admit(ledger: SiteLedger, *, site: str, run_id: str, rnd: int, rounds_planned: int,
          mechanism: Mechanism, ceilings: Ceilings) -> Projection:
    """Admit round ``rnd`` of a run, or refuse it (raise) by the rule above.

    The decision and its record (this run's reservation of rounds ``rnd`` .. ``rounds_planned``,
    or the refusal, which releases the reservation) are one transaction under the ledger's write
    lock (:mod:`site_node.privacy.reservations`).

    Raises
    ------
    Refusal
        Naming the ceiling, the projected ε and the limit; nothing is spent.
    """
    with ledger.transaction():
        decision = _decide(ledger, site=site, run_id=run_id, rnd=rnd,
                           rounds_planned=rounds_planned, mechanism=mechanism, ceilings=ceilings)
        if isinstance(decision, str):
            ledger.record_refusal(run_id=run_id, rnd=rnd, reason=decision)
            reservations.release(ledger, run_id)
        else:
            reservations.reserve(ledger, run_id=run_id, next_round=rnd,
                                 last_round=rounds_planned, mechanism=mechanism)
    if isinstance(decision, str):
        log.warning("%s", decision)
        raise Refusal(decision)
    what = "the next round" if decision.rounds == 1 else f"{decision.rounds} more round(s)"
    log.info("site %s admits %s of run %s: run ε %.4f, lifetime ε %.4f", site, what, run_id,
             decision.run_epsilon, decision.lifetime_epsilon)
    return decision
