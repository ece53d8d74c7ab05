"""Google's dp_accounting (the auditor's accountant) agrees with Opacus (the sites' one ε
computation) within 1%; both implement the one accountant interface; the auditor's cached
recomputation gives what dp_accounting's own accountants give."""

from __future__ import annotations

import itertools
import time

import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.audit import accountant as ia
from site_node.privacy import accountant as opacus_accountant
from site_node.protocol.accounting import Accountant
from site_node.protocol.mechanism import Mechanism

CASES = [
    [(1.1, 0.25, 4)] * 10,
    [(0.8, 0.125, 8)] * 3 + [(1.5, 0.25, 4)] * 2,
    [(2.0, 0.05, 20)] * 5,
    [(4.0, 1.0, 1)] * 3,
]
# dp_accounting's PLD composes round by round (about a second per round here): shorter
# histories with the same mechanisms keep the PRV comparison fast.
PRV_CASES = [
    [(1.1, 0.25, 4)] * 3,
    [(0.8, 0.125, 8), (1.5, 0.25, 4)],
    [(2.0, 0.05, 20)] * 2,
    [(4.0, 1.0, 1)] * 3,
]
PAIRS = [(h, "rdp") for h in CASES] + [(h, "prv") for h in PRV_CASES]


def mechanisms(history: list[tuple[float, float, int]], accountant: str) -> list[Mechanism]:
    return [Mechanism(noise_multiplier=s, sample_rate=q, steps=n, max_grad_norm=1.0,
                      accountant=accountant) for s, q, n in history]


@pytest.mark.parametrize(("history", "accountant"), PAIRS)
def test_independent_epsilon_agrees_with_opacus(
    history: list[tuple[float, float, int]], accountant: str
) -> None:
    for delta in (1e-5, 1e-6) if accountant == "rdp" else (1e-5,):
        opacus = opacus_accountant.epsilon(mechanisms(history, accountant), delta=delta,
                                           accountant=accountant)
        independent = ia.epsilon(history, delta, accountant)
        assert ia.agrees(opacus, independent, accountant=accountant), (opacus, independent)


def test_cumulative_epsilons_grow_per_round() -> None:
    eps = ia.cumulative_epsilons(CASES[0][:4], 1e-5, "rdp")
    assert len(eps) == 4 and eps == sorted(eps) and eps[0] > 0
    assert eps[-1] == pytest.approx(ia.epsilon(CASES[0][:4], 1e-5, "rdp"))
    assert ia.epsilon([], 1e-5, "rdp") == 0.0


def test_unknown_accountant_is_an_error() -> None:
    with pytest.raises(ia.AccountingError, match="gdp"):
        ia.epsilon(CASES[0], 1e-5, "gdp")


def test_invalid_mechanism_is_an_accounting_error() -> None:
    with pytest.raises(ia.AccountingError, match="cannot account"):
        ia.epsilon([(1.0, 1.5, 4)], 1e-5, "rdp")


def test_tolerance_is_relative_and_symmetric() -> None:
    assert ia.agrees(1.0099, 1.0) and ia.agrees(0.9901, 1.0)
    assert not ia.agrees(1.02, 1.0) and not ia.agrees(0.98, 1.0)


def test_prv_claims_get_opacus_stated_absolute_error_on_top() -> None:
    """Opacus' PRV accountant returns ε to within 0.01 (absolute): for a small ε that is more
    than 1%, so an honest PRV receipt must not be called a mismatch."""
    assert ia.agrees(0.52, 0.51, accountant="prv") and not ia.agrees(0.52, 0.51)
    assert ia.agrees(0.50, 0.51, accountant="prv")
    assert not ia.agrees(0.53, 0.51, accountant="prv")
    assert not ia.agrees(10.2, 10.0, accountant="prv")  # 2% + 0.01 is still too much


# -- one accountant interface, cached recomputation -------------------------------------------


def test_both_sides_implement_the_one_accountant_interface() -> None:
    for name in ("rdp", "prv"):
        site, auditor = opacus_accountant.create_accountant(name), ia.create_accountant(name)
        assert isinstance(site, Accountant) and isinstance(auditor, Accountant)
        assert site.name == auditor.name == name
        assert type(site).__module__ != type(auditor).__module__  # independent implementations
    with pytest.raises(ValueError, match="gdp"):
        opacus_accountant.create_accountant("gdp")
    with pytest.raises(ia.AccountingError, match="gdp"):
        ia.create_accountant("gdp")


def _uncached_rdp(history: list[tuple[float, float, int]], delta: float) -> list[float]:
    """dp_accounting's RdpAccountant composing every round itself (no cache)."""
    acc = RdpAccountant(ia.RDP_ORDERS)
    out = []
    for sigma, q, steps in history:
        acc.compose(ia.round_event(sigma, q, steps))
        out.append(float(acc.get_epsilon(delta)))
    return out


@settings(max_examples=25, deadline=None)
@given(history=st.lists(st.tuples(st.sampled_from([0.7, 1.1, 2.0, 4.0]),
                                  st.sampled_from([0.01, 0.125, 0.5, 1.0]),
                                  st.integers(min_value=1, max_value=50)),
                        min_size=1, max_size=6),
       delta=st.sampled_from([1e-5, 1e-3]))
def test_the_cached_rdp_recomputation_is_dp_accountings_own(
    history: list[tuple[float, float, int]], delta: float
) -> None:
    """Per-(σ, q) curves times steps, summed, give what dp_accounting's accountant gives."""
    fast = ia.cumulative_epsilons(history, delta, "rdp")
    assert fast == pytest.approx(_uncached_rdp(history, delta), rel=1e-9)
    assert all(b >= a for a, b in itertools.pairwise(fast))  # ε only grows


def test_the_pld_recomputation_is_memoised_by_history() -> None:
    history = [(1.1, 0.25, 4), (1.1, 0.25, 4)]
    first = ia.cumulative_epsilons(history, 1e-5, "prv")
    start = time.perf_counter()
    again = ia.cumulative_epsilons(history, 1e-5, "prv")
    assert again == first and time.perf_counter() - start < 0.05
    acc = PLDAccountant(value_discretization_interval=ia.PLD_DISCRETIZATION)
    for rnd in history:
        acc.compose(ia.round_event(*rnd))
    assert first[-1] == acc.get_epsilon(1e-5)
