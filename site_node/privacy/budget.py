"""A site's lifetime budget statement: the one figure every command and receipt prints.

``site-node status``, ``site-node budget`` and each signed receipt state the site's lifetime ε
through :func:`lifetime`, at the δ and with the accountant of the site's latest DP event unless
told otherwise, so the three always agree. The δ and the privacy unit (what ε protects: a record
or a patient; a ledger holds one unit, :func:`site_node.privacy.accountant.unit_of`) are part of
the statement and printed with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from site_node.privacy import accountant
from site_node.privacy.ledger import SiteLedger


@dataclass(frozen=True)
class BudgetStatement:
    """ε composed over a set of the site's DP events, at ``delta``, with ``accountant``."""

    epsilon: float
    delta: float
    accountant: str
    events: int
    runs: int
    unit: str = "record"

    def __str__(self) -> str:
        return (f"ε = {self.epsilon:.4f} ({self.unit}-level) at δ = {self.delta:g} "
                f"({self.accountant}) over {self.events} round(s) in {self.runs} run(s)")


def lifetime(ledger: SiteLedger, *, delta: float | None = None,
             accountant_name: str | None = None) -> BudgetStatement | None:
    """The site's lifetime ε over every event in its ledger (None if it has spent nothing).

    ``delta`` and ``accountant_name`` default to those of the latest event (what the latest
    receipt stated).
    """
    events = ledger.events()
    if not events:
        return None
    latest = events[-1]
    d = latest.delta if delta is None else delta
    name = latest.mechanism.accountant if accountant_name is None else accountant_name
    mechanisms = [e.mechanism for e in events]
    eps = accountant.epsilon(mechanisms, delta=d, accountant=name)
    return BudgetStatement(epsilon=eps, delta=d, accountant=name, events=len(events),
                           runs=len({e.run_id for e in events}),
                           unit=accountant.unit_of(mechanisms) or "record")


def run_epsilon(ledger: SiteLedger, run_id: str, *, delta: float, accountant_name: str) -> float:
    """ε spent in one run, composed over its rounds."""
    events = [e.mechanism for e in ledger.events(run_id)]
    return accountant.epsilon(events, delta=delta, accountant=accountant_name)
