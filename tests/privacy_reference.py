"""An accountant independent of Opacus (Google's dp_accounting), for tests to check ε against."""

from __future__ import annotations

from collections.abc import Iterable

import dp_accounting
from dp_accounting.rdp import RdpAccountant

# The Rényi orders Opacus' RDP accountant uses, so both compute the same bound.
OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def rdp_epsilon(events: Iterable[tuple[float, float, int]], delta: float) -> float:
    """ε at ``delta`` of Poisson-subsampled Gaussian events ``(noise, rate, steps)`` by RDP."""
    acc = RdpAccountant(orders=OPACUS_ORDERS)
    for noise, rate, steps in events:
        event = dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise))
        acc.compose(event, int(steps))
    return float(acc.get_epsilon(delta))
