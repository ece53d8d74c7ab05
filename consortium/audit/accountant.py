"""An accountant independent of Opacus: Google's ``dp_accounting``, for auditors.

Each round of DP-SGD a receipt describes is a Poisson-subsampled Gaussian mechanism run
``steps`` times: ``SelfComposedDpEvent(PoissonSampledDpEvent(sample_rate,
GaussianDpEvent(noise_multiplier)), steps)``. Rounds compose in order. Receipts accounted with
``rdp`` are recomputed with ``dp_accounting.rdp.RdpAccountant`` (Opacus' RDP orders), those with
``prv`` with ``dp_accounting.pld.PLDAccountant`` (privacy loss distributions; PRV and PLD are
both numerically tight accountants and agree to well within :data:`TOLERANCE`).

No torch, no Opacus, no Flower.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

#: Relative tolerance between a claimed ε and its independent re-computation (1%).
TOLERANCE = 0.01
#: Opacus' PRV accountant states ε only to within this absolute error (its ``eps_error``, an
#: upper bound): a PRV claim may exceed the re-computation by up to this much besides
#: :data:`TOLERANCE` (for ε below 1 that is more than 1%).
PRV_EPS_ERROR = 0.01
#: The RDP orders Opacus uses, so both sides optimise over the same orders.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
PLD_DISCRETIZATION = 1e-4


class AccountingError(Exception):
    """A mechanism cannot be accounted (unknown accountant or invalid parameters)."""


@contextmanager
def _quiet() -> Iterator[None]:
    """dp_accounting logs a warning per order that fails to converge; keep them out."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def round_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """One round of DP-SGD as a ``dp_accounting`` event."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        int(steps),
    )


def _accountant(name: str) -> dp_accounting.PrivacyAccountant:
    if name == "rdp":
        return RdpAccountant(RDP_ORDERS)
    if name == "prv":
        return PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    raise AccountingError(f"unknown accountant {name!r} (expected 'rdp' or 'prv')")


def cumulative_epsilons(
    rounds: Sequence[tuple[float, float, int]], delta: float, accountant: str
) -> list[float]:
    """ε after each round, composing ``(noise_multiplier, sample_rate, steps)`` in order."""
    acc = _accountant(accountant)
    out = []
    with _quiet():
        for sigma, q, steps in rounds:
            try:
                acc.compose(round_event(sigma, q, steps))
            except (ValueError, TypeError) as exc:
                raise AccountingError(f"cannot account σ={sigma}, q={q}, steps={steps}: "
                                      f"{exc}") from None
            out.append(float(acc.get_epsilon(delta)))
    return out


def epsilon(rounds: Sequence[tuple[float, float, int]], delta: float, accountant: str) -> float:
    """ε after all ``rounds`` (0.0 for none)."""
    eps = cumulative_epsilons(rounds, delta, accountant)
    return eps[-1] if eps else 0.0


def agrees(claimed: float, independent: float, tolerance: float = TOLERANCE, *,
           accountant: str = "rdp") -> bool:
    """Whether a claimed ε is within ``tolerance`` (relative) of the re-computation, plus
    :data:`PRV_EPS_ERROR` (absolute) for a claim made with the ``prv`` accountant."""
    slack = PRV_EPS_ERROR if accountant == "prv" else 0.0
    return abs(claimed - independent) <= tolerance * max(abs(independent), 1e-12) + slack
