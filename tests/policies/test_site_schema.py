"""A site's own policy: validation, site ids, content hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies.errors import PolicyError
from policies.loader import load_site_policy, parse_site_policy
from tests.policies.policy_data import write


def refusal(data: dict[str, Any], source: str = "f.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        parse_site_policy(data, source)
    return str(info.value)


def test_every_field_is_optional_but_the_site() -> None:
    p = parse_site_policy({"site": "hungary"}, "f.yaml").policy
    assert p.site == "hungary" and p.delta is None and p.peers is None
    assert p.dp.noise_multiplier is None and p.secagg.reconstruction_threshold is None
    assert "f.yaml: site: Field required" in refusal({"epsilon_ceiling": 1.0})


def test_unknown_site_policy_field_is_an_error_naming_file_and_field() -> None:
    assert "f.yaml: epsilon_celing" in refusal({"site": "hungary", "epsilon_celing": 1.0})
    assert "f.yaml: dp.noise" in refusal({"site": "hungary", "dp": {"noise": 1.0}})


@pytest.mark.parametrize("bad", ["../x", "", "x" * 300, "Hungary", "hun gary", None, 7])
def test_the_site_id_follows_the_one_rule(bad: object) -> None:
    assert "f.yaml: site" in refusal({"site": bad})


@pytest.mark.parametrize("bad", ["../x", "", "x" * 300, "Hungary"])
def test_peer_ids_follow_the_one_rule(bad: str) -> None:
    msg = refusal({"site": "hungary", "peers": ["hungary", bad]})
    assert "f.yaml: peers" in msg and "invalid site id" in msg


def test_peers_must_include_the_site_itself_and_be_at_least_two() -> None:
    assert "must include the site itself" in refusal(
        {"site": "hungary", "peers": ["cleveland", "switzerland"]})
    assert "f.yaml: peers" in refusal({"site": "hungary", "peers": ["hungary"]})


@pytest.mark.parametrize(("data", "field"), [
    ({"dp": {"local_epochs": True}}, "dp.local_epochs"),
    ({"dp": {"noise_multiplier": float("inf")}}, "dp.noise_multiplier"),
    ({"dp": {"max_grad_norm": float("nan")}}, "dp.max_grad_norm"),
    ({"epsilon_ceiling": float("inf")}, "epsilon_ceiling"),
    ({"delta": 1}, "delta"),
    ({"delta": 0.0}, "delta"),
    ({"min_sites": 1}, "min_sites"),
    ({"dp": {"sample_rate": 0.3}}, "dp.sample_rate"),
    ({"dp": {"accountant": "gdp"}}, "dp.accountant"),
    ({"dp": {"noise_multiplier": 2.0, "target_epsilon": 1.0}}, "dp"),
    ({"version": 2}, "version"),
])
def test_bad_values_are_refused_naming_the_field(data: dict[str, Any], field: str) -> None:
    assert f"f.yaml: {field}" in refusal({"site": "hungary", **data})


def test_yaml_literals_are_strict(tmp_path: Path) -> None:
    ok = load_site_policy(write(tmp_path, "site: hungary\ndelta: 1e-6\n")).policy
    assert ok.delta == 1e-6
    for text in ("site: hungary\ndp:\n  local_epochs: yes\n",
                 "site: hungary\nepsilon_ceiling: .inf\n",
                 "site: hungary\ndp:\n  noise_multiplier: .nan\n"):
        with pytest.raises(PolicyError):
            load_site_policy(write(tmp_path, text))


def test_site_policy_hash_ignores_comments(tmp_path: Path) -> None:
    a = write(tmp_path, "site: hungary\nepsilon_ceiling: 2.0\n", "a.yaml")
    b = write(tmp_path, "# a comment\nsite: hungary   # trailing\nepsilon_ceiling: 2.0\n",
              "b.yaml")
    assert load_site_policy(a).sha256 == load_site_policy(b).sha256
    write(tmp_path, "site: hungary\nepsilon_ceiling: 2.5\n", "b.yaml")
    assert load_site_policy(a).sha256 != load_site_policy(b).sha256
