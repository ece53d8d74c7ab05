"""Site policies: validation, tighten-only merging, content hashes, JSON Schemas, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from consortium.cli import app
from policies.effective import ACCOUNTANT_STRICTNESS, LooseningError, effective_policy
from policies.loader import PolicyError, load_policy, load_site_policy, parse_site_policy
from policies.schema import ConsortiumPolicy
from policies.schema_export import POLICIES_DIR, expected_files
from policies.site_schema import SitePolicy

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SITE_FILES = [POLICIES_DIR / "sites" / f"{s}.yaml" for s in SITES]


def consortium(**dp: object) -> ConsortiumPolicy:
    base = load_policy().policy.model_dump()
    base["dp"].update(dp)
    return ConsortiumPolicy.model_validate(base)


def test_example_site_policies_are_valid_and_tighten() -> None:
    c = load_policy().policy
    for file in SITE_FILES:
        eff = effective_policy(c, load_site_policy(file).policy)
        assert eff.site == file.stem
        assert eff.epsilon_ceiling <= c.epsilon_ceiling
        assert eff.delta <= c.delta
        assert len(eff.sha256) == 64 and eff.consortium_sha256 != eff.sha256


@pytest.mark.parametrize(("override", "field", "site_value", "consortium_value"), [
    ({"epsilon_ceiling": 5.0}, "epsilon_ceiling", "5.0", "3.0"),
    ({"lifetime_epsilon_ceiling": 50.0}, "lifetime_epsilon_ceiling", "50.0", "10.0"),
    ({"delta": 1e-3}, "delta", "0.001", "1e-05"),
    ({"min_sites": 2, }, "min_sites", "2", "4"),
    ({"dp": {"target_epsilon": 4.0}}, "dp.target_epsilon", "4.0", "3.0"),
    ({"dp": {"max_grad_norm": 2.0}}, "dp.max_grad_norm", "2.0", "1.0"),
    ({"dp": {"sample_rate": 0.5}}, "dp.sample_rate", "0.5", "0.2"),
    ({"dp": {"local_epochs": 9}}, "dp.local_epochs", "9", "2"),
    ({"secagg": {"reconstruction_threshold": 1 + 0}}, "secagg.reconstruction_threshold",
     "1", "2"),
])
def test_loosening_is_rejected_naming_field_and_both_values(
    override: dict[str, object], field: str, site_value: str, consortium_value: str
) -> None:
    site = SitePolicy.model_validate({"site": "hungary", **override})
    with pytest.raises(LooseningError) as info:
        effective_policy(load_policy().policy, site)
    msg = str(info.value)
    assert msg.startswith(field) and site_value in msg and consortium_value in msg


def test_noise_multiplier_may_only_rise_and_accountant_only_get_stricter() -> None:
    c = consortium(noise_multiplier=1.0, target_epsilon=None, accountant="prv")
    ok = effective_policy(c, SitePolicy(site="cleveland", dp={"noise_multiplier": 1.5,
                                                               "accountant": "rdp"}))
    assert ok.dp.noise_multiplier == 1.5 and ok.dp.accountant == "rdp"
    with pytest.raises(LooseningError, match=r"dp.noise_multiplier.*0.5.*1.0"):
        effective_policy(c, SitePolicy(site="cleveland", dp={"noise_multiplier": 0.5}))
    with pytest.raises(LooseningError, match=r"dp\.accountant"):
        effective_policy(consortium(), SitePolicy(site="cleveland", dp={"accountant": "prv"}))


def test_non_member_site_and_peers_are_rejected() -> None:
    with pytest.raises(LooseningError, match="not a member"):
        effective_policy(load_policy().policy, SitePolicy(site="mayo"))
    with pytest.raises(LooseningError, match="peers"):
        effective_policy(load_policy().policy,
                         SitePolicy(site="hungary", peers=("hungary", "mayo")))


def test_unknown_site_policy_field_is_an_error_naming_file_and_field() -> None:
    with pytest.raises(PolicyError, match=r"f.yaml: epsilon_celing"):
        parse_site_policy({"site": "hungary", "epsilon_celing": 1.0}, "f.yaml")


def test_site_policy_hash_ignores_comments(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("site: hungary\nepsilon_ceiling: 2.0\n")
    b.write_text("# a comment\nsite: hungary   # trailing\nepsilon_ceiling: 2.0\n")
    assert load_site_policy(a).sha256 == load_site_policy(b).sha256
    b.write_text("site: hungary\nepsilon_ceiling: 2.5\n")
    assert load_site_policy(a).sha256 != load_site_policy(b).sha256


def test_committed_json_schemas_are_up_to_date() -> None:
    for name, text in expected_files().items():
        committed = (POLICIES_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: run python -m policies.schema_export"


def test_policy_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "check", *map(str, SITE_FILES)])
    assert ok.exit_code == 0, ok.output
    for site in SITES:
        assert site in ok.output
    bad = tmp_path / "loose.yaml"
    bad.write_text("site: hungary\ndp:\n  max_grad_norm: 4.0\n")
    res = runner.invoke(app, ["policy", "check", str(bad)])
    assert res.exit_code == 1
    assert "loose.yaml" in res.output and "dp.max_grad_norm" in res.output


# -- property tests ---------------------------------------------------------------------------

overrides = st.fixed_dictionaries({}, optional={
    "delta": st.floats(1e-9, 0.5),
    "epsilon_ceiling": st.floats(0.1, 20),
    "lifetime_epsilon_ceiling": st.floats(0.1, 40),
    "min_sites": st.integers(2, 6),
    "dp": st.fixed_dictionaries({}, optional={
        "target_epsilon": st.floats(0.1, 20),
        "max_grad_norm": st.floats(0.01, 5),
        "sample_rate": st.sampled_from([1.0, 0.5, 0.25, 0.125, 0.1, 0.05]),
        "local_epochs": st.integers(1, 5),
        "accountant": st.sampled_from(["rdp", "prv"]),
    }),
})


@settings(max_examples=300, deadline=None)
@given(overrides)
def test_effective_policy_is_never_looser(override: dict[str, object]) -> None:
    c = load_policy().policy
    site = SitePolicy.model_validate({"site": "cleveland", **override})
    try:
        e = effective_policy(c, site)
    except LooseningError:
        return
    assert e.delta <= c.delta
    assert e.epsilon_ceiling <= c.epsilon_ceiling
    assert e.lifetime_epsilon_ceiling <= c.lifetime_epsilon_ceiling
    assert e.min_sites >= c.min_sites
    assert e.dp.target_epsilon is not None and c.dp.target_epsilon is not None
    assert e.dp.target_epsilon <= c.dp.target_epsilon
    assert e.dp.max_grad_norm <= c.dp.max_grad_norm
    assert e.dp.sample_rate <= c.dp.sample_rate
    assert e.dp.local_epochs <= c.dp.local_epochs
    assert ACCOUNTANT_STRICTNESS[e.dp.accountant] >= ACCOUNTANT_STRICTNESS[c.dp.accountant]


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


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0001, 100.0))
def test_any_raised_ceiling_is_rejected(factor: float) -> None:
    c = load_policy().policy
    with pytest.raises(LooseningError, match="epsilon_ceiling"):
        effective_policy(c, SitePolicy(site="hungary", epsilon_ceiling=c.epsilon_ceiling * factor))
