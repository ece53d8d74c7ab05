"""The consortium policy: the shipped default is valid; every bad value names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.loader import PolicyError, load_policy, parse_policy, policy_sha256


def default_data() -> dict[str, Any]:
    return yaml.safe_load(Path(load_policy().source).read_text())


def test_shipped_default_is_valid() -> None:
    loaded = load_policy()
    p = loaded.policy
    assert p.delta == 1e-5 and p.epsilon_ceiling == 3.0 and len(p.sites) == 4
    assert len(loaded.sha256) == 64


def test_hash_ignores_formatting_but_not_values(tmp_path: Path) -> None:
    data = default_data()
    f = tmp_path / "p.yaml"
    f.write_text("# a comment\n" + yaml.safe_dump(data, default_flow_style=True))
    assert load_policy(f).sha256 == load_policy().sha256
    data["rounds"] = 11
    assert parse_policy(data, "x").sha256 != load_policy().sha256


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("delta",), 0, "delta"),
        (("epsilon_ceiling",), -1, "epsilon_ceiling"),
        (("dp", "max_grad_norm"), 0, "dp.max_grad_norm"),
        (("dp", "sample_rate"), 0.3, "dp.sample_rate"),
        (("dp", "accountant"), "moments", "dp.accountant"),
        (("secagg", "num_shares"), 4, "secagg.num_shares"),
        (("secagg", "timeout_s"), 0, "secagg.timeout_s"),
        (("min_sites",), 1, "min_sites"),
        (("dp", "surprise"), 1, "dp.surprise"),
    ],
)
def test_bad_values_name_file_and_field(path: tuple[str, ...], value: Any, field: str) -> None:
    data = default_data()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "policies/x.yaml")
    assert f"policies/x.yaml: {field}" in str(info.value)


def test_even_num_shares_never_reaches_flower() -> None:
    data = default_data()
    data["secagg"]["num_shares"] = 4
    with pytest.raises(PolicyError, match="must be odd"):
        parse_policy(data, "p")


def test_cross_field_rules() -> None:
    data = default_data()
    data["dp"]["noise_multiplier"] = 1.0  # both noise sources given
    with pytest.raises(PolicyError, match="exactly one of"):
        parse_policy(data, "p")
    data = default_data()
    data["dp"]["target_epsilon"] = 5.0
    with pytest.raises(PolicyError, match="exceeds epsilon_ceiling"):
        parse_policy(data, "p")
    data = default_data()
    data["min_sites"] = 5
    with pytest.raises(PolicyError, match="exceeds the number of member sites"):
        parse_policy(data, "p")


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("delta: [1,\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(bad)


def test_policy_hash_is_of_canonical_content() -> None:
    loaded = load_policy()
    assert policy_sha256(loaded.policy) == loaded.sha256
