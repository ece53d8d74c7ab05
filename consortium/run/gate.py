"""Whether a run goes on before each round: the budget, the preflight, the sites still able.

Before every round the run stops if the budget projection says the round could bring a site past
the per-run ceiling; before the first round (of a run, or of a resumed run) it asks every site
whether it would admit the run (:mod:`consortium.run.preflight_query`) and stops if fewer than
``min_sites`` would; before every later round it stops once fewer than ``min_sites`` members
have not refused the run for good (a site's admission refusal is final for the run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from consortium.run.attribution import Attribution
from consortium.run.convergence import STOP_BUDGET, budget_allows
from consortium.run.grid import PacedGrid
from consortium.run.plan import RunPlan
from consortium.run.preflight import decide, shortfall
from consortium.run.preflight_query import ask
from consortium.run.recorder import RunRecorder

log = logging.getLogger(__name__)


@dataclass
class RoundGate:
    """The stop rules of one run; ``finally_refused`` maps each site that refused the run for
    good to its reason (the round loop adds the final refusals of every round)."""

    plan: RunPlan
    first: int
    finally_refused: dict[str, str] = field(default_factory=dict)

    def stop_before(self, rnd: int, *, grid: PacedGrid, rec: RunRecorder,
                    attribution: Attribution) -> str | None:
        """Why the run must stop before round ``rnd`` (None: it goes on)."""
        p = self.plan.loaded.policy
        allowed, eps = budget_allows(mechanism=self.plan.mechanism(), rounds_attempted=rnd - 1,
                                     delta=p.delta, ceiling=p.epsilon_ceiling)
        if not allowed:
            return (f"{STOP_BUDGET}: round {rnd} could bring a site to ε={eps:.4f} > "
                    f"{p.epsilon_ceiling}")
        if rnd == self.first:
            return self._preflight(rnd, grid, rec, attribution)
        return shortfall(members=p.sites, finally_refused=self.finally_refused,
                         min_sites=p.min_sites)

    def _preflight(self, rnd: int, grid: PacedGrid, rec: RunRecorder,
                   attribution: Attribution) -> str | None:
        """Ask every site whether it would admit the run from round ``rnd``; log the answers."""
        p = self.plan.loaded.policy
        answers, rejections = ask(grid, instruction=self.plan.fit_config(rnd),
                                  attribution=attribution, min_sites=p.min_sites,
                                  members=len(p.sites),
                                  timeout=p.secagg.timeout_s)
        result = decide(rnd=rnd, members=p.sites, min_sites=p.min_sites, answers=answers,
                        rejections=rejections)
        self.finally_refused |= {s: result.refusals[s] for s in result.final}
        with rec.store.db.transaction():
            rec.audit.preflight(result)
        log.info("preflight before round %d: %d of %d site(s) would admit the run%s", rnd,
                 len(result.admitting), len(p.sites),
                 "".join(f"; {s} refuses: {r}" for s, r in result.refusals.items()))
        return result.stop_reason or shortfall(
            members=p.sites, finally_refused=self.finally_refused, min_sites=p.min_sites)
