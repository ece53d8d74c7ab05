"""The site accountant: cumulative across rounds, restorable, reproducible independently."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from site_node.accounting import Mechanism, SiteAccountant, noise_for_target
from tests.privacy_reference import rdp_epsilon

DELTA = 1e-5


def mech(noise: float = 1.5, rate: float = 0.25, steps: int = 4) -> Mechanism:
    return Mechanism(noise_multiplier=noise, sample_rate=rate, steps=steps, max_grad_norm=1.0,
                     accountant="rdp")


def test_epsilon_is_cumulative_across_rounds_and_restores_from_state() -> None:
    acc = SiteAccountant(accountant="rdp")
    assert acc.epsilon(DELTA) == 0.0
    seen = []
    for _ in range(5):
        acc.record(mech())
        acc = SiteAccountant.from_json(acc.to_json())  # the node state round-trip
        seen.append(acc.epsilon(DELTA))
    assert seen == sorted(seen) and seen[0] < seen[-1]
    single = SiteAccountant(accountant="rdp", history=[(1.5, 0.25, 20)])
    assert seen[-1] == pytest.approx(single.epsilon(DELTA), rel=1e-9)


def test_projection_spends_nothing() -> None:
    acc = SiteAccountant(accountant="rdp")
    acc.record(mech())
    before = acc.history
    projected = acc.projected_epsilon(mech(), DELTA)
    assert acc.history == before
    assert projected > acc.epsilon(DELTA)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.6, 5.0), st.sampled_from([0.1, 0.25, 0.5, 1.0]),
                  st.integers(1, 20)),
        min_size=1, max_size=6,
    )
)
def test_rdp_matches_an_independent_accountant(events: list[tuple[float, float, int]]) -> None:
    acc = SiteAccountant(accountant="rdp")
    previous = 0.0
    for noise, rate, steps in events:
        acc.record(mech(noise, rate, steps))
        eps = acc.epsilon(DELTA)
        assert eps >= previous - 1e-12  # composition never lowers ε
        previous = eps
    # Within the ε a policy can allow (ceilings up to 10), the two RDP-to-(ε, δ) conversions
    # agree to 1%; far above it Opacus' tighter conversion drifts further from dp_accounting's.
    assume(acc.epsilon(DELTA) <= 10.0)
    assert acc.epsilon(DELTA) == pytest.approx(rdp_epsilon(events, DELTA), rel=0.01)


def test_noise_for_target_meets_the_target() -> None:
    sigma = noise_for_target(target_epsilon=3.0, delta=DELTA, sample_rate=0.25, steps=40,
                             accountant="rdp")
    eps = SiteAccountant(accountant="rdp", history=[(sigma, 0.25, 40)]).epsilon(DELTA)
    assert 2.9 < eps <= 3.0


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("noise_multiplier", {"noise": 0.0}), ("sample_rate", {"rate": 1.5}),
     ("steps", {"steps": 0})],
)
def test_mechanism_rejects_bad_parameters(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        mech(**kwargs)  # type: ignore[arg-type]


def test_accountant_name_is_checked() -> None:
    with pytest.raises(ValueError, match="accountant"):
        SiteAccountant(accountant="moments")
    acc = SiteAccountant(accountant="prv")
    with pytest.raises(ValueError, match="accountant"):
        acc.record(mech())
