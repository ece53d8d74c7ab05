"""The consortium policy schema: strict, finite numbers; every bad value names file and field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from policies.errors import PolicyError
from policies.loader import load_policy, parse_policy
from policies.schema import MAX_MODULUS
from tests.policies.policy_data import default_data, with_value, write


def names_field(msg: str, field: str, source: str = "policies/x.yaml") -> bool:
    """Whether ``msg`` names ``field`` of ``source`` (a union field adds its member: ``.float``)."""
    return re.search(rf"(^|\n){re.escape(source)}: {re.escape(field)}[.:]", msg) is not None


def refusal(data: dict[str, Any], source: str = "policies/x.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(data, source)
    return str(info.value)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("delta",), 0, "delta"),
        (("delta",), 1.0, "delta"),
        (("delta",), 1, "delta"),  # an integer is not a δ
        (("epsilon_ceiling",), -1, "epsilon_ceiling"),
        (("dp", "max_grad_norm"), 0, "dp.max_grad_norm"),
        (("dp", "sample_rate"), 0.3, "dp.sample_rate"),
        (("dp", "accountant"), "moments", "dp.accountant"),
        (("secagg", "num_shares"), 4, "secagg.num_shares"),
        (("secagg", "timeout_s"), 0, "secagg.timeout_s"),
        (("min_sites",), 1, "min_sites"),
        (("dp", "surprise"), 1, "dp.surprise"),
        (("rounds",), 1.5, "rounds"),
        (("rounds",), "10", "rounds"),
        (("version",), 2, "version"),
    ],
)
def test_bad_values_name_file_and_field(path: tuple[str, ...], value: Any, field: str) -> None:
    assert names_field(refusal(with_value(path, value)), field)


@pytest.mark.parametrize(("path", "field"), [
    (("dp", "local_steps"), "dp.local_steps"),
    (("rounds",), "rounds"),
    (("min_sites",), "min_sites"),
    (("dp", "max_grad_norm"), "dp.max_grad_norm"),
])
def test_yes_is_not_a_number(tmp_path: Path, path: tuple[str, ...], field: str) -> None:
    # YAML 1.1 reads `yes` as true; a boolean must never pass for 1.
    assert names_field(refusal(with_value(path, True)), field)
    text = Path(load_policy().source).read_text(encoding="utf-8")
    text = text.replace("local_steps: 5 ", "local_steps: yes ")
    with pytest.raises(PolicyError, match=r"dp\.local_steps"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize(("path", "field"), [
    (("dp", "noise_multiplier"), "dp.noise_multiplier"),
    (("dp", "max_grad_norm"), "dp.max_grad_norm"),
    (("epsilon_ceiling",), "epsilon_ceiling"),
    (("lifetime_epsilon_ceiling",), "lifetime_epsilon_ceiling"),
    (("delta",), "delta"),
    (("dp", "learning_rate"), "dp.learning_rate"),
    (("secagg", "clipping_range"), "secagg.clipping_range"),
])
def test_non_finite_numbers_are_refused(path: tuple[str, ...], field: str, value: float
                                        ) -> None:
    data = with_value(path, value)
    if path == ("dp", "noise_multiplier"):
        data["dp"]["target_epsilon"] = None
    assert names_field(refusal(data), field)


@pytest.mark.parametrize("literal", [".inf", "-.inf", ".nan", ".NaN", ".Inf"])
def test_yaml_infinity_and_nan_literals_are_refused(tmp_path: Path, literal: str) -> None:
    text = Path(load_policy().source).read_text(encoding="utf-8")
    for old in ("epsilon_ceiling: 1.0", "max_grad_norm: 0.1 "):
        bad = text.replace(old, old.split(":")[0] + ": " + literal + " ")
        assert bad != text
        with pytest.raises(PolicyError, match=old.split(":")[0]):
            load_policy(write(tmp_path, bad))
    bad = text.replace("target_epsilon: 1.0", "noise_multiplier: " + literal)
    with pytest.raises(PolicyError, match=r"dp\.noise_multiplier"):
        load_policy(write(tmp_path, bad))


def test_secagg_capacity_is_checked_against_the_number_of_sites() -> None:
    data = with_value(("secagg", "quantization_range"), 2**31)
    data["secagg"]["modulus_range"] = 2**32
    assert len(data["sites"]) == 4
    msg = refusal(data)
    assert "4 sites" in msg and "quantization_range 2147483648" in msg and "4294967296" in msg
    # Just below the modulus for four sites fits; one level more does not.
    data["secagg"]["quantization_range"] = 2**30 - 1
    assert parse_policy(data, "p").policy.secagg.quantization_range == 2**30 - 1
    data["secagg"]["quantization_range"] = 2**30
    refusal(data)


def test_capacity_counts_every_member_site() -> None:
    data = with_value(("secagg", "quantization_range"), 2**29)
    data["secagg"]["modulus_range"] = 2**32
    parse_policy(data, "p")  # 4 × 2**29 < 2**32
    data["sites"] = [*data["sites"], "s5", "s6", "s7", "s8"]
    assert "8 sites" in refusal(data)


@pytest.mark.parametrize("modulus", [2**64, 2**49, MAX_MODULUS * 2, 3 * 2**20, 2])
def test_modulus_out_of_range_or_not_a_power_of_two_is_refused(modulus: int) -> None:
    assert "secagg" in refusal(with_value(("secagg", "modulus_range"), modulus))


def test_largest_modulus_is_accepted() -> None:
    data = with_value(("secagg", "modulus_range"), MAX_MODULUS)
    assert parse_policy(data, "p").policy.secagg.modulus_range == 2**48


@pytest.mark.parametrize("shares", [4, 2, 6, 0, -3])
def test_even_or_small_integer_num_shares_never_reaches_flower(shares: int) -> None:
    assert "secagg.num_shares" in refusal(with_value(("secagg", "num_shares"), shares))


def test_fractional_num_shares_and_threshold() -> None:
    data = with_value(("secagg", "num_shares"), 1.0)
    data["secagg"]["reconstruction_threshold"] = 0.5
    assert parse_policy(data, "p").policy.secagg.num_shares == 1.0
    data["secagg"]["num_shares"] = 1.5
    assert "secagg.num_shares" in refusal(data)


@pytest.mark.parametrize("bad", ["../x", "", "x" * 300, "Cleveland", "a/b"])
def test_member_site_ids_follow_the_one_rule(bad: str) -> None:
    data = default_data()
    data["sites"] = ["cleveland", "hungary", "long_beach", bad]
    msg = refusal(data)
    assert "sites" in msg and "invalid site id" in msg


def test_cross_field_rules() -> None:
    assert "exactly one of" in refusal(with_value(("dp", "noise_multiplier"), 1.0))
    assert "exactly one of" in refusal(with_value(("dp", "target_epsilon"), None))
    assert "exceeds epsilon_ceiling" in refusal(with_value(("dp", "target_epsilon"), 5.0))
    assert "exceeds the number of member sites" in refusal(with_value(("min_sites",), 5))
    assert "must be unique" in refusal(
        with_value(("sites",), ["cleveland", "cleveland", "hungary", "long_beach"]))
    assert "exceeds lifetime_epsilon_ceiling" in refusal(
        with_value(("lifetime_epsilon_ceiling",), 0.5))
    assert "exactly one of local_epochs and local_steps" in refusal(
        with_value(("dp", "local_epochs"), 2))
    data = with_value(("min_sites",), 2)
    assert "num_shares (3) exceeds min_sites (2)" in refusal(data)
    data = with_value(("secagg", "reconstruction_threshold"), 3)
    assert "must be less than num_shares" in refusal(data)


def test_steps_per_round_follows_epochs_and_sampling() -> None:
    data = with_value(("dp", "local_epochs"), 3)
    del data["dp"]["local_steps"]
    dp = parse_policy(data, "p").policy.dp
    assert dp.steps_per_round == round(3 / dp.sample_rate) == 6
    assert load_policy().policy.dp.steps_per_round == 5  # the shipped default counts steps
