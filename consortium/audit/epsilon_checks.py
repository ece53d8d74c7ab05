"""Every receipt's ε recomputed independently, and the ceilings checked (for the verifier).

Each site's receipts of a run are sorted by round; their mechanisms compose in that order and
:func:`consortium.audit.accountant.cumulative_epsilons` (``dp_accounting``, never Opacus) gives
the cumulative ε after each, which must agree with the claim (:func:`accountant.agrees`). The
sample rate a receipt states is that of its privacy unit (patients for a patient-level receipt),
so the recomputed ε is about that unit; a site's receipts of one run must share one unit. The
recomputation is cached by distinct mechanism, so a store of many receipts verifies quickly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from consortium.audit import accountant as ia
from consortium.errors import CeilingPassed, EpsilonMismatch, ReceiptInvalid
from site_node.protocol.receipt import Receipt


@dataclass(frozen=True)
class EpsilonCheck:
    """One receipt's ε, claimed and recomputed, with its ceiling."""

    run_id: str
    site: str
    round: int
    claimed: float
    independent: float
    ceiling: float
    accountant: str
    delta: float
    unit: str = "record"

def check_units(receipts: list[Receipt], task_unit: str) -> None:
    """Every receipt states the privacy unit of the run's task (raises :class:`ReceiptInvalid`
    naming the first that does not): a site cannot call a record-level ε patient-level."""
    for r in receipts:
        if r.privacy_unit != task_unit:
            raise ReceiptInvalid(f"receipt of site {r.site} run {r.run_id} round {r.round}: its "
                                 f"ε is {r.privacy_unit}-level, but the run's task is "
                                 f"{task_unit}-level")


def check_epsilons(receipts: list[Receipt], consortium_ceiling: float) -> list[EpsilonCheck]:
    """Recompute every site's cumulative ε and check the ceilings (raises on the first)."""
    by_site: dict[str, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_site[r.site].append(r)
    checks = []
    for site, rs in sorted(by_site.items()):
        rs.sort(key=lambda r: r.round)
        if len({(r.delta, r.accountant) for r in rs}) != 1:
            raise ReceiptInvalid(f"site {site}: δ or accountant changed within run {rs[0].run_id}")
        units = sorted({r.privacy_unit for r in rs})
        if len(units) != 1:  # a record-level and a patient-level ε never compose
            raise ReceiptInvalid(f"site {site}: the privacy unit changed within run "
                                 f"{rs[0].run_id} ({' and '.join(units)})")
        try:
            recomputed = ia.cumulative_epsilons(
                [(r.noise_multiplier, r.sample_rate, r.steps) for r in rs], rs[0].delta,
                rs[0].accountant)
        except ia.AccountingError as exc:
            raise ReceiptInvalid(f"site {site} run {rs[0].run_id}: {exc}") from None
        for r, eps in zip(rs, recomputed, strict=True):
            checks.append(_check_one(r, eps, consortium_ceiling))
    return checks


def _check_one(r: Receipt, eps: float, consortium_ceiling: float) -> EpsilonCheck:
    where = f"receipt of site {r.site} run {r.run_id} round {r.round}"
    if not ia.agrees(r.epsilon, eps, accountant=r.accountant):
        raise EpsilonMismatch(f"{where}: claimed ε={r.epsilon:.6f} but dp_accounting gives "
                              f"{eps:.6f} ({r.accountant}, δ={r.delta:g}); tolerance "
                              f"{ia.TOLERANCE:.0%}"
                              + (f" + {ia.PRV_EPS_ERROR:g}" if r.accountant == "prv" else ""))
    if r.epsilon_ceiling > consortium_ceiling:
        raise CeilingPassed(f"{where}: site ceiling {r.epsilon_ceiling:g} is above the "
                            f"consortium's {consortium_ceiling:g}")
    if r.epsilon > r.epsilon_ceiling or eps > r.epsilon_ceiling * (1 + ia.TOLERANCE):
        raise CeilingPassed(f"{where}: ε={r.epsilon:.6f} (recomputed {eps:.6f}) passed the "
                            f"per-run ceiling {r.epsilon_ceiling:g}")
    if r.lifetime_epsilon > r.lifetime_epsilon_ceiling:
        raise CeilingPassed(f"{where}: lifetime ε={r.lifetime_epsilon:.6f} passed the lifetime "
                            f"ceiling {r.lifetime_epsilon_ceiling:g}")
    if r.lifetime_epsilon < r.epsilon * (1 - ia.TOLERANCE):
        raise EpsilonMismatch(f"{where}: lifetime ε={r.lifetime_epsilon:.6f} is below this "
                              f"run's ε={r.epsilon:.6f}")
    return EpsilonCheck(r.run_id, r.site, r.round, r.epsilon, eps, r.epsilon_ceiling,
                        r.accountant, r.delta, r.privacy_unit)
