"""An accountant independent of Opacus: Google's ``dp_accounting``, for auditors.

Each round of DP-SGD a receipt describes is a Poisson-subsampled Gaussian mechanism run
``steps`` times: ``SelfComposedDpEvent(PoissonSampledDpEvent(sample_rate,
GaussianDpEvent(noise_multiplier)), steps)``. Rounds compose in order. The two implementations
of the one accountant interface (:class:`site_node.protocol.accounting.Accountant`):
:class:`RdpRecomputation` for receipts accounted with ``rdp`` (``dp_accounting.rdp``, Opacus' RDP
orders) and :class:`PldRecomputation` for those with ``prv`` (privacy loss distributions; PRV
and PLD are both numerically tight accountants and agree to well within :data:`TOLERANCE`).

Verification recomputes ε for every receipt of a store, so both are cached: RDP composes
linearly, so the per-step RDP curve of each distinct (σ, q) is computed once (``dp_accounting``
itself) and a history is the sum of ``steps`` times those curves, converted to ε by
``dp_accounting``'s own ``compute_epsilon``; and both memoise ε by the history up to each round,
so sites and runs with the same mechanisms are accounted once.

No torch, no Opacus, no Flower.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

from site_node.protocol.accounting import Accountant, Round, registry

#: Relative tolerance between a claimed ε and its independent re-computation (1%).
TOLERANCE = 0.01
#: Opacus' PRV accountant states ε only to within this absolute error (its ``eps_error``, an
#: upper bound): a PRV claim may exceed the re-computation by up to this much besides
#: :data:`TOLERANCE` (for ε below 1 that is more than 1%).
PRV_EPS_ERROR = 0.01
#: The RDP orders Opacus uses, so both sides optimise over the same orders.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
PLD_DISCRETIZATION = 1e-4
#: How many recomputed ε to remember (keyed by accountant, history up to a round, and δ).
_CACHE_SIZE = 65536
_EPSILONS: dict[tuple[str, tuple[Round, ...], float], float] = {}


def _remember(key: tuple[str, tuple[Round, ...], float], eps: float) -> None:
    if len(_EPSILONS) >= _CACHE_SIZE:
        _EPSILONS.clear()
    _EPSILONS[key] = eps


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


def _compose(acc: dp_accounting.PrivacyAccountant, rnd: Round) -> None:
    sigma, q, steps = rnd
    try:
        with _quiet():
            acc.compose(round_event(sigma, q, steps))
    except (ValueError, TypeError) as exc:
        raise AccountingError(f"cannot account σ={sigma}, q={q}, steps={steps}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _unit_rdp(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    """``dp_accounting``'s RDP curve of one step of the Poisson-subsampled Gaussian."""
    acc = RdpAccountant(RDP_ORDERS)
    _compose(acc, (noise_multiplier, sample_rate, 1))
    return tuple(float(x) for x in acc.rdp)


class RdpRecomputation(Accountant):
    """RDP, recomputed with ``dp_accounting.rdp`` over Opacus' orders."""

    name = "rdp"

    def epsilon(self, history: Sequence[Round], delta: float) -> float:
        eps = self.cumulative_epsilons(history, delta)
        return eps[-1] if eps else 0.0

    def cumulative_epsilons(self, history: Sequence[Round], delta: float) -> list[float]:
        total = np.zeros(len(RDP_ORDERS))
        out: list[float] = []
        prefix: tuple[Round, ...] = ()
        with _quiet():
            for sigma, q, steps in history:
                if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                    raise AccountingError(f"cannot account σ={sigma}, q={q}, steps={steps}: "
                                          "steps must be a non-negative integer")
                total = total + steps * np.asarray(_unit_rdp(float(sigma), float(q)))
                prefix = (*prefix, (float(sigma), float(q), steps))
                key = (self.name, prefix, delta)
                if key not in _EPSILONS:
                    _remember(key, float(compute_epsilon(RDP_ORDERS, total, delta)[0]))
                out.append(_EPSILONS[key])
        return out


class PldRecomputation(Accountant):
    """PRV claims, recomputed with ``dp_accounting.pld`` (memoised by history prefix)."""

    name = "prv"

    def epsilon(self, history: Sequence[Round], delta: float) -> float:
        eps = self.cumulative_epsilons(history, delta)
        return eps[-1] if eps else 0.0

    def cumulative_epsilons(self, history: Sequence[Round], delta: float) -> list[float]:
        rounds = tuple((float(s), float(q), int(n)) for s, q, n in history)
        out: list[float] = []
        acc: PLDAccountant | None = None
        composed = 0
        for i in range(len(rounds)):
            key = (self.name, rounds[: i + 1], delta)
            if key not in _EPSILONS:
                acc = acc or PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
                for rnd in rounds[composed: i + 1]:
                    _compose(acc, rnd)
                composed = i + 1
                with _quiet():
                    _remember(key, float(acc.get_epsilon(delta)))
            out.append(_EPSILONS[key])
        return out


#: The implementations, by the accountant name a receipt states.
ACCOUNTANTS = registry(RdpRecomputation, PldRecomputation)


def create_accountant(name: str) -> Accountant:
    """The independent recomputation for an accountant name; raises :class:`AccountingError`."""
    try:
        return ACCOUNTANTS[name]()
    except KeyError:
        raise AccountingError(f"unknown accountant {name!r} (expected 'rdp' or 'prv')") from None


def cumulative_epsilons(
    rounds: Sequence[tuple[float, float, int]], delta: float, accountant: str
) -> list[float]:
    """ε after each round, composing ``(noise_multiplier, sample_rate, steps)`` in order."""
    return create_accountant(accountant).cumulative_epsilons(rounds, delta)


def epsilon(rounds: Sequence[tuple[float, float, int]], delta: float, accountant: str) -> float:
    """ε after all ``rounds`` (0.0 for none)."""
    return create_accountant(accountant).epsilon(rounds, delta)


def agrees(claimed: float, independent: float, tolerance: float = TOLERANCE, *,
           accountant: str = "rdp") -> bool:
    """Whether a claimed ε is within ``tolerance`` (relative) of the re-computation, plus
    :data:`PRV_EPS_ERROR` (absolute) for a claim made with the ``prv`` accountant."""
    slack = PRV_EPS_ERROR if accountant == "prv" else 0.0
    return abs(claimed - independent) <= tolerance * max(abs(independent), 1e-12) + slack
