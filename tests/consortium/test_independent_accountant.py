"""Google's dp_accounting (the auditor's accountant) agrees with Opacus within 1%."""

from __future__ import annotations

import pytest

from consortium import independent_accountant as ia
from site_node.accounting import SiteAccountant

CASES = [
    [(1.1, 0.25, 4)] * 10,
    [(0.8, 0.125, 8)] * 3 + [(1.5, 0.25, 4)] * 2,
    [(2.0, 0.05, 20)] * 5,
    [(4.0, 1.0, 1)] * 3,
]


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("history", CASES)
def test_independent_epsilon_agrees_with_opacus(
    history: list[tuple[float, float, int]], accountant: str
) -> None:
    for delta in (1e-5, 1e-6):
        opacus = SiteAccountant(accountant=accountant, history=history).epsilon(delta)
        independent = ia.epsilon(history, delta, accountant)
        assert ia.agrees(opacus, independent), (opacus, independent)


def test_cumulative_epsilons_grow_per_round() -> None:
    eps = ia.cumulative_epsilons(CASES[0][:4], 1e-5, "rdp")
    assert len(eps) == 4 and eps == sorted(eps) and eps[0] > 0


def test_unknown_accountant_is_an_error() -> None:
    with pytest.raises(ia.AccountingError, match="gdp"):
        ia.epsilon(CASES[0], 1e-5, "gdp")


def test_tolerance_is_relative_and_symmetric() -> None:
    assert ia.agrees(1.0099, 1.0) and ia.agrees(0.9901, 1.0)
    assert not ia.agrees(1.02, 1.0) and not ia.agrees(0.98, 1.0)
