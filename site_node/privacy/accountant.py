"""The one place a site's ε is computed from its mechanism history.

Training, the ledger, admission, the consortium's budget projection, receipts and every command
call :func:`epsilon`: ε is composed over a sequence of :class:`Mechanism` events by a real Opacus
accountant, one implementation of the one accountant interface
(:class:`site_node.protocol.accounting.Accountant`) per accountant name, created by
:func:`create_accountant` as Opacus' ``create_accountant`` does: :class:`OpacusPrv` (Opacus' PRV
accountant, loaded through its public ``load_state_dict``) and :class:`OpacusRdp` (Opacus' own
RDP analysis, ``compute_rdp`` and ``get_privacy_spent``, with the per-step curve of each (σ, q)
cached, which is what Opacus' ``RDPAccountant`` computes); ε values are never added.
Every figure is stated at a δ the caller passes and prints with it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from opacus import __version__ as opacus_version
from opacus.accountants import RDPAccountant
from opacus.accountants import create_accountant as create_opacus_accountant
from opacus.accountants.analysis import rdp as rdp_analysis

from site_node import node_cache
from site_node.protocol.accounting import Accountant, Round, registry
from site_node.protocol.mechanism import ACCOUNTANTS, Mechanism

#: The orders Opacus' RDP accountant optimises over.
RDP_ORDERS: list[float] = [float(a) for a in RDPAccountant.DEFAULT_ALPHAS]


def _check(delta: float, accountant: str) -> None:
    if not (isinstance(delta, float | int) and math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


#: What the on-disk curves are kept under (:mod:`site_node.node_cache`).
CURVE_CACHE = "rdp-curves"


def _curve_key(noise_multiplier: float, sample_rate: float) -> str:
    orders = ",".join(repr(a) for a in RDP_ORDERS)
    return f"opacus {opacus_version}|sigma {noise_multiplier!r}|q {sample_rate!r}|{orders}"


@functools.lru_cache(maxsize=4096)
def _unit_rdp(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    """Opacus' RDP curve of one step of the Poisson-subsampled Gaussian, at its default orders.

    It is the costly part (about 0.5 s at q = 0.5) and depends only on (σ, q); a round of
    ``steps`` steps is ``steps`` times it, exactly as Opacus' ``compute_rdp`` computes it.
    Cached in this process and, where the node keeps a cache (:mod:`site_node.node_cache`),
    on disk, keyed by σ, q, the orders and Opacus' version: a deployed node runs each message
    in a fresh process.
    """
    key = _curve_key(noise_multiplier, sample_rate)
    kept = node_cache.get(CURVE_CACHE, key)
    if (isinstance(kept, list) and len(kept) == len(RDP_ORDERS)
            and all(isinstance(x, float) and x >= 0 for x in kept)):
        return tuple(kept)
    curve = tuple(float(x) for x in rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDP_ORDERS))
    node_cache.put(CURVE_CACHE, key, list(curve))
    return curve


def _rdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """What Opacus' ``RDPAccountant.get_epsilon`` returns for this history, with the per-step
    curves cached."""
    total = np.zeros(len(RDP_ORDERS))
    for sigma, q, steps in history:
        total += steps * np.asarray(_unit_rdp(sigma, q))
    eps, _ = rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=total, delta=delta)
    return float(eps)


class OpacusRdp(Accountant):
    """Opacus' RDP analysis (what its ``RDPAccountant`` computes), per-step curves cached."""

    name = "rdp"

    def epsilon(self, history: Sequence[Round], delta: float) -> float:
        return _rdp_epsilon(list(history), delta) if history else 0.0


class OpacusPrv(Accountant):
    """Opacus' PRV accountant, its history loaded through ``load_state_dict``."""

    name = "prv"

    def epsilon(self, history: Sequence[Round], delta: float) -> float:
        if not history:
            return 0.0
        acc = create_opacus_accountant(self.name)
        acc.load_state_dict({"mechanism": acc.mechanism(), "history": list(history)})
        return float(acc.get_epsilon(delta=delta))


#: The implementations, by accountant name.
ACCOUNTANT_CLASSES = registry(OpacusRdp, OpacusPrv)


def create_accountant(name: str) -> Accountant:
    """The site's accountant of that name; raises ``ValueError`` for an unknown one."""
    if name not in ACCOUNTANT_CLASSES:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {name!r}")
    return ACCOUNTANT_CLASSES[name]()


class MixedUnits(ValueError):
    """Events of different privacy units: a record-level and a patient-level ε are about
    different neighbouring datasets and are never composed as if they were one."""

    def __init__(self, units: Sequence[str]) -> None:
        self.units = tuple(units)
        super().__init__(f"cannot compose a {self.units[0]}-level ε with a "
                         f"{self.units[1]}-level ε (different privacy units)")


def unit_of(events: Sequence[Mechanism]) -> str | None:
    """The privacy unit every event shares (None for no event).

    Raises
    ------
    MixedUnits
        If two events are of different units.
    """
    units = list(dict.fromkeys(e.unit for e in events))
    if len(units) > 1:
        raise MixedUnits(units)
    return units[0] if units else None


def epsilon(events: Sequence[Mechanism], *, delta: float, accountant: str) -> float:
    """ε at ``delta`` after every event, composed in order (0.0 for no event), about the unit
    the events share.

    Raises
    ------
    ValueError
        If δ is not in (0, 1) or the accountant is unknown; :class:`MixedUnits` if the events
        are of different privacy units.
    """
    _check(delta, accountant)
    unit_of(events)
    return create_accountant(accountant).epsilon(_merged(events), delta)


def _merged(events: Sequence[Mechanism]) -> list[tuple[float, float, int]]:
    """The accountant's history: consecutive events of the same (σ, q) merged into one entry
    with their steps summed, as Opacus' own ``step`` records them (the accountants cost time
    per entry, not per step, so a ledger of many equal rounds stays fast)."""
    history: list[tuple[float, float, int]] = []
    for noise, rate, steps in (e.event for e in events):
        if history and history[-1][:2] == (noise, rate):
            history[-1] = (noise, rate, history[-1][2] + steps)
        else:
            history.append((noise, rate, steps))
    return history


def projected(events: Sequence[Mechanism], mechanism: Mechanism, rounds: int, *,
              delta: float, accountant: str) -> float:
    """ε at ``delta`` if ``rounds`` more rounds of ``mechanism`` followed ``events``."""
    return epsilon([*events, *([mechanism] * rounds)], delta=delta, accountant=accountant)


#: How close to the target ε the noise search stops (Opacus' ``get_noise_multiplier`` tolerance).
EPSILON_TOLERANCE = 0.005
_INT_ORDERS = [a for a in RDP_ORDERS if a.is_integer()]


def _smallest_sigma(eps_of: Callable[[float], float], target: float, low: float = 0.0,
                    high: float = 10.0) -> float:
    """Opacus' search: double σ until ε(σ) ≤ target, then bisect until ε is within
    :data:`EPSILON_TOLERANCE` below the target; returns a σ whose ε is at most the target."""
    eps_high = eps_of(high)
    while eps_high > target:
        low, high = high, 2 * high
        eps_high = eps_of(high)
    while target - eps_high > EPSILON_TOLERANCE:
        mid = (low + high) / 2
        eps = eps_of(mid)
        if eps <= target:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


@functools.lru_cache(maxsize=256)
def noise_for_target(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                     accountant: str) -> float:
    """The smallest noise multiplier (to within :data:`EPSILON_TOLERANCE` of the target) whose ε
    over ``steps`` stays at most ``target_epsilon`` at ``delta``.

    RDP: the search runs first over Opacus' integer orders only (fast; the ε it sees is never
    below the full one, so that σ is safe), then its ε is computed over all of Opacus' orders;
    only if that is more than the tolerance below the target is the search refined with all
    orders. The returned σ always has ε ≤ target by the full computation.
    """
    _check(delta, accountant)
    if accountant != "rdp":
        from opacus.accountants.utils import get_noise_multiplier

        return float(get_noise_multiplier(
            target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
            steps=steps, accountant=accountant, epsilon_tolerance=EPSILON_TOLERANCE))

    def eps_int(sigma: float) -> float:
        rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=sigma, steps=steps,
                                       orders=_INT_ORDERS)
        return float(rdp_analysis.get_privacy_spent(orders=_INT_ORDERS, rdp=rdp,
                                                    delta=delta)[0])

    def eps_full(sigma: float) -> float:
        return _rdp_epsilon([(sigma, sample_rate, steps)], delta)

    sigma = _smallest_sigma(eps_int, target_epsilon)
    if target_epsilon - eps_full(sigma) <= EPSILON_TOLERANCE:
        return sigma
    return _smallest_sigma(eps_full, target_epsilon, low=0.0, high=sigma)
