"""The one place a site's ε is computed from its mechanism history.

Training, the ledger, admission, the consortium's budget projection, receipts and every command
call :func:`epsilon`: ε is composed over a sequence of :class:`Mechanism` events by a real Opacus
accountant (RDP or PRV), loaded through its public ``load_state_dict``; ε values are never added.
Every figure is stated at a δ the caller passes and prints with it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from opacus.accountants import create_accountant

from site_node.protocol.mechanism import ACCOUNTANTS, Mechanism


def _check(delta: float, accountant: str) -> None:
    if not (isinstance(delta, float | int) and math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def epsilon(events: Sequence[Mechanism], *, delta: float, accountant: str) -> float:
    """ε at ``delta`` after every event, composed in order (0.0 for no event).

    Raises
    ------
    ValueError
        If δ is not in (0, 1) or the accountant is unknown.
    """
    _check(delta, accountant)
    if not events:
        return 0.0
    acc = create_accountant(accountant)
    acc.load_state_dict({"mechanism": acc.mechanism(), "history": _history(events)})
    return float(acc.get_epsilon(delta=delta))


def _history(events: Sequence[Mechanism]) -> list[tuple[float, float, int]]:
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


@functools.lru_cache(maxsize=256)
def noise_for_target(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                     accountant: str) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose ε over ``steps`` stays
    at most ``target_epsilon`` at ``delta``."""
    from opacus.accountants.utils import get_noise_multiplier

    _check(delta, accountant)
    return float(get_noise_multiplier(
        target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
        steps=steps, accountant=accountant, epsilon_tolerance=0.005,
    ))
