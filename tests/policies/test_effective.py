"""The one tighten-only merge of a site policy into the consortium policy."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.effective import ACCOUNTANT_STRICTNESS, effective_policy
from policies.errors import LooseningError, PolicyError
from policies.loader import load_policy, policy_sha256
from policies.schema import ConsortiumPolicy
from policies.site_schema import SitePolicy


def consortium(**dp: object) -> ConsortiumPolicy:
    base = load_policy().policy.model_dump()
    base["dp"].update(dp)
    return ConsortiumPolicy.model_validate(base)


def test_without_a_site_policy_the_consortium_policy_applies() -> None:
    c = load_policy().policy
    e = effective_policy(c, "hungary")
    assert e.site == "hungary" and e.site_policy_sha256 is None
    assert (e.delta, e.epsilon_ceiling, e.lifetime_epsilon_ceiling, e.min_sites) == (
        c.delta, c.epsilon_ceiling, c.lifetime_epsilon_ceiling, c.min_sites)
    assert e.dp == c.dp and e.secagg == c.secagg and e.peers == c.sites
    assert e.consortium_sha256 == policy_sha256(c) and len(e.sha256) == 64
    empty = effective_policy(c, SitePolicy(site="hungary"))
    assert empty.site_policy_sha256 is not None and empty.sha256 != e.sha256
    ignore = {"sha256", "site_policy_sha256"}
    assert empty.model_dump(exclude=ignore) == e.model_dump(exclude=ignore)


def test_the_effective_hash_follows_the_merged_values() -> None:
    c = load_policy().policy
    a = effective_policy(c, SitePolicy(site="hungary", epsilon_ceiling=0.8,
                                       dp={"target_epsilon": 0.7}))
    b = effective_policy(c, SitePolicy(site="hungary", epsilon_ceiling=0.9,
                                       dp={"target_epsilon": 0.7}))
    assert a.sha256 != b.sha256 and a.consortium_sha256 == b.consortium_sha256
    assert a.site_policy_sha256 != b.site_policy_sha256


@pytest.mark.parametrize(("override", "field", "site_value", "consortium_value"), [
    ({"epsilon_ceiling": 5.0}, "epsilon_ceiling", "5.0", "1.0"),
    ({"lifetime_epsilon_ceiling": 50.0}, "lifetime_epsilon_ceiling", "50.0", "10.0"),
    ({"delta": 1e-3}, "delta", "0.001", "1e-05"),
    ({"min_sites": 2}, "min_sites", "2", "4"),
    ({"dp": {"target_epsilon": 4.0}}, "dp.target_epsilon", "4.0", "1.0"),
    ({"dp": {"max_grad_norm": 2.0}}, "dp.max_grad_norm", "2.0", "0.1"),
    ({"dp": {"sample_rate": 1.0}}, "dp.sample_rate", "1.0", "0.5"),
    ({"dp": {"local_steps": 9}}, "dp.local_steps", "9", "5"),
    ({"dp": {"accountant": "prv"}}, "dp.accountant", "'prv'", "'rdp'"),
    ({"secagg": {"reconstruction_threshold": 1}}, "secagg.reconstruction_threshold", "1", "2"),
])
def test_loosening_is_rejected_naming_field_and_both_values(
    override: dict[str, object], field: str, site_value: str, consortium_value: str
) -> None:
    site = SitePolicy.model_validate({"site": "hungary", **override})
    with pytest.raises(LooseningError) as info:
        effective_policy(load_policy().policy, site)
    msg = str(info.value)
    assert msg.startswith(field) and site_value in msg and consortium_value in msg
    assert isinstance(info.value, PolicyError)


def test_noise_multiplier_may_only_rise_and_accountant_only_get_stricter() -> None:
    c = consortium(noise_multiplier=1.0, target_epsilon=None, accountant="prv")
    ok = effective_policy(c, SitePolicy(site="cleveland", dp={"noise_multiplier": 1.5,
                                                               "accountant": "rdp"}))
    assert ok.dp.noise_multiplier == 1.5 and ok.dp.accountant == "rdp"
    with pytest.raises(LooseningError, match=r"dp.noise_multiplier.*0.5.*1.0"):
        effective_policy(c, SitePolicy(site="cleveland", dp={"noise_multiplier": 0.5}))
    with pytest.raises(LooseningError, match=r"dp\.accountant"):
        effective_policy(consortium(), SitePolicy(site="cleveland", dp={"accountant": "prv"}))


def test_a_site_cannot_switch_the_noise_source() -> None:
    with pytest.raises(LooseningError, match=r"dp\.noise_multiplier: the consortium fixes"):
        effective_policy(consortium(), SitePolicy(site="hungary", dp={"noise_multiplier": 9.0}))
    c = consortium(noise_multiplier=1.0, target_epsilon=None)
    with pytest.raises(LooseningError, match=r"dp\.target_epsilon: the consortium fixes"):
        effective_policy(c, SitePolicy(site="hungary", dp={"target_epsilon": 0.1}))


def test_threshold_count_and_fraction_do_not_mix() -> None:
    with pytest.raises(LooseningError, match="both be counts or both be fractions"):
        effective_policy(load_policy().policy,
                         SitePolicy(site="hungary", secagg={"reconstruction_threshold": 0.9}))
    with_five = load_policy().policy.model_dump()
    with_five["secagg"]["num_shares"] = 0.9
    with_five["secagg"]["reconstruction_threshold"] = 0.5
    c = ConsortiumPolicy.model_validate(with_five)
    e = effective_policy(c, SitePolicy(site="hungary", secagg={"reconstruction_threshold": 0.75}))
    assert e.secagg.reconstruction_threshold == 0.75 and e.secagg.num_shares == 0.9


@pytest.mark.parametrize(("consortium_threshold", "site_threshold"), [(2, 3), (2, 7), (0.5, 1.5)])
def test_a_threshold_raised_beyond_what_can_be_met_is_refused(
    consortium_threshold: float, site_threshold: float
) -> None:
    data = load_policy().policy.model_dump()
    if isinstance(consortium_threshold, float):
        data["secagg"]["num_shares"] = 1.0
    data["secagg"]["reconstruction_threshold"] = consortium_threshold
    c = ConsortiumPolicy.model_validate(data)
    site = SitePolicy(site="hungary", secagg={"reconstruction_threshold": site_threshold})
    with pytest.raises(LooseningError) as info:
        effective_policy(c, site)
    msg = str(info.value)
    assert msg.startswith("secagg.reconstruction_threshold: site value") and "\n" not in msg


def test_non_member_site_and_peers_are_rejected() -> None:
    with pytest.raises(LooseningError, match="not a member"):
        effective_policy(load_policy().policy, SitePolicy(site="mayo"))
    with pytest.raises(LooseningError, match=r"peers: site value \['mayo'\]"):
        effective_policy(load_policy().policy,
                         SitePolicy(site="hungary", peers=("hungary", "mayo")))


def test_peers_narrow_the_members_in_consortium_order() -> None:
    c = load_policy().policy
    e = effective_policy(c, SitePolicy(site="hungary", min_sites=4,
                                       peers=("switzerland", "hungary", "cleveland",
                                              "long_beach")))
    assert e.peers == c.sites
    with pytest.raises(LooseningError, match="min_sites: 4 exceeds the site's 3 peers"):
        effective_policy(c, SitePolicy(site="hungary", peers=("switzerland", "hungary",
                                                               "cleveland")))


# -- property tests -------------------------------------------------------------------------

overrides = st.fixed_dictionaries({}, optional={
    "delta": st.floats(1e-9, 0.5),
    "epsilon_ceiling": st.floats(0.1, 20),
    "lifetime_epsilon_ceiling": st.floats(0.1, 40),
    "min_sites": st.integers(2, 6),
    "dp": st.fixed_dictionaries({}, optional={
        "target_epsilon": st.floats(0.1, 20),
        "max_grad_norm": st.floats(0.01, 5),
        "sample_rate": st.sampled_from([1.0, 0.5, 0.25, 0.2, 0.125, 0.1, 0.05]),
        "local_steps": st.integers(1, 10),
        "accountant": st.sampled_from(["rdp", "prv"]),
    }),
})


def loosened_fields(c: ConsortiumPolicy, o: dict[str, Any]) -> list[str]:
    """The overrides that loosen ``c``, by the rules the merge must follow (an oracle)."""
    dp = o.get("dp", {})
    out: list[str] = [f for f in ("delta", "epsilon_ceiling", "lifetime_epsilon_ceiling")
                      if f in o and o[f] > getattr(c, f)]
    if o.get("min_sites", c.min_sites) < c.min_sites:
        out.append("min_sites")
    for f in ("target_epsilon", "max_grad_norm", "sample_rate", "local_steps"):
        if f in dp and dp[f] > getattr(c.dp, f):
            out.append(f"dp.{f}")
    if dp.get("accountant") == "prv" and c.dp.accountant == "rdp":
        out.append("dp.accountant")
    return out


@settings(max_examples=300, deadline=None)
@given(overrides)
def test_effective_policy_is_never_looser(override: dict[str, Any]) -> None:
    c = load_policy().policy
    site = SitePolicy.model_validate({"site": "cleveland", **override})
    loose = loosened_fields(c, override)
    dp = override.get("dp", {})
    eps = override.get("epsilon_ceiling", c.epsilon_ceiling)
    inconsistent = (override.get("min_sites", c.min_sites) > len(c.sites)
                    or eps > override.get("lifetime_epsilon_ceiling", c.lifetime_epsilon_ceiling)
                    or dp.get("target_epsilon", c.dp.target_epsilon) > eps)
    try:
        e = effective_policy(c, site)
    except LooseningError as exc:
        assert loose or inconsistent, f"refused a tightening policy: {exc}"
        if loose:
            assert str(exc).split(":")[0] in [*loose, "epsilon_ceiling", "dp.target_epsilon",
                                              "min_sites"]
        return
    assert not loose, f"accepted loosening overrides {loose}"
    assert e.delta <= c.delta
    assert e.epsilon_ceiling <= c.epsilon_ceiling
    assert e.lifetime_epsilon_ceiling <= c.lifetime_epsilon_ceiling
    assert e.epsilon_ceiling <= e.lifetime_epsilon_ceiling
    assert e.min_sites >= c.min_sites
    assert e.dp.target_epsilon is not None and c.dp.target_epsilon is not None
    assert e.dp.target_epsilon <= c.dp.target_epsilon
    assert e.dp.max_grad_norm <= c.dp.max_grad_norm
    assert e.dp.sample_rate <= c.dp.sample_rate
    assert e.dp.steps_per_round <= c.dp.steps_per_round
    assert ACCOUNTANT_STRICTNESS[e.dp.accountant] >= ACCOUNTANT_STRICTNESS[c.dp.accountant]
    assert e.dp.learning_rate == c.dp.learning_rate and e.rounds == c.rounds
    # Every override that was given is the value in force.
    for f in ("delta", "epsilon_ceiling", "lifetime_epsilon_ceiling", "min_sites"):
        if f in override:
            assert getattr(e, f) == override[f]
    for f, v in dp.items():
        assert getattr(e.dp, f) == v


# Each loosenable field: how to write a site policy for a value, the consortium's value, and
# a strategy of values that loosen it.
_BASE = load_policy().policy
LOOSENERS: dict[str, tuple[Any, Any]] = {
    "delta": (_BASE.delta, st.floats(_BASE.delta * 1.0001, 0.99)),
    "epsilon_ceiling": (_BASE.epsilon_ceiling, st.floats(_BASE.epsilon_ceiling * 1.0001, 1000)),
    "lifetime_epsilon_ceiling": (_BASE.lifetime_epsilon_ceiling,
                                 st.floats(_BASE.lifetime_epsilon_ceiling * 1.0001, 1000)),
    "min_sites": (_BASE.min_sites, st.integers(2, _BASE.min_sites - 1)),
    "dp.target_epsilon": (_BASE.dp.target_epsilon,
                          st.floats(float(_BASE.dp.target_epsilon or 0) * 1.0001, 1000)),
    "dp.max_grad_norm": (_BASE.dp.max_grad_norm,
                         st.floats(_BASE.dp.max_grad_norm * 1.0001, 1e6)),
    "dp.sample_rate": (_BASE.dp.sample_rate, st.sampled_from(
        [q for q in (1.0, 0.5, 0.25) if q > _BASE.dp.sample_rate])),
    "dp.local_steps": (_BASE.dp.local_steps, st.integers((_BASE.dp.local_steps or 0) + 1, 100)),
    "secagg.reconstruction_threshold": (_BASE.secagg.reconstruction_threshold,
                                        st.integers(-5, 1)),
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(LOOSENERS)).flatmap(
    lambda f: st.tuples(st.just(f), LOOSENERS[f][1])))
def test_any_loosening_value_is_refused_naming_the_field_and_both_values(
    case: tuple[str, Any]
) -> None:
    field, value = case
    base_value = LOOSENERS[field][0]
    section, _, name = field.rpartition(".")
    data: dict[str, Any] = {"site": "hungary"}
    if section:
        data[section] = {name: value}
    else:
        data[name] = value
    with pytest.raises(LooseningError) as info:
        effective_policy(_BASE, SitePolicy.model_validate(data))
    msg = str(info.value)
    assert msg.startswith(f"{field}: site value {value!r} loosens the consortium value "
                          f"{base_value!r}"), msg


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_tightening_overrides_are_accepted_and_applied(f_eps: float, f_clip: float,
                                                       f_delta: float) -> None:
    c = load_policy().policy
    eps = c.epsilon_ceiling * f_eps
    site = SitePolicy(site="switzerland", epsilon_ceiling=eps, delta=c.delta * f_delta,
                      dp={"target_epsilon": eps, "max_grad_norm": c.dp.max_grad_norm * f_clip})
    e = effective_policy(c, site)
    assert (e.epsilon_ceiling, e.dp.target_epsilon) == (eps, eps)
    assert e.dp.max_grad_norm == c.dp.max_grad_norm * f_clip
    assert e.delta == c.delta * f_delta


@pytest.mark.parametrize(("consortium_work", "site_work", "field"), [
    ({"local_steps": 5}, {"local_epochs": 1}, "dp.local_epochs"),
    ({"local_epochs": 2}, {"local_steps": 3}, "dp.local_steps"),
])
def test_a_site_may_not_switch_the_unit_of_local_work(
    consortium_work: dict[str, int], site_work: dict[str, int], field: str
) -> None:
    data = load_policy().policy.model_dump(mode="json")
    data["dp"].pop("local_steps", None)
    data["dp"].pop("local_epochs", None)
    data["dp"].update(consortium_work)
    c = ConsortiumPolicy.model_validate(data)
    with pytest.raises(LooseningError, match=f"^{field}: the consortium fixes"):
        effective_policy(c, SitePolicy.model_validate({"site": "hungary", "dp": site_work}))


def test_lower_local_steps_are_in_force() -> None:
    e = effective_policy(load_policy().policy,
                         SitePolicy.model_validate({"site": "hungary", "dp": {"local_steps": 2}}))
    assert e.dp.local_steps == 2 and e.dp.steps_per_round == 2
