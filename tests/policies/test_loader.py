"""Loading policies at the edge: the shipped default, content hashes, canonical JSON, and a loader
that raises nothing but :class:`PolicyError` whatever the file holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from policies.errors import PolicyError
from policies.identity import SITE_ID_PATTERN
from policies.loader import (
    LoadedPolicy,
    LoadedSitePolicy,
    canonical_json,
    load_any_policy,
    load_policy,
    load_site_policy,
    parse_policy,
    policy_from_canonical,
    policy_sha256,
)
from policies.schema import MAX_MODULUS
from tests.policies.policy_data import default_data, with_value, write


def test_shipped_default_is_valid() -> None:
    loaded = load_policy()
    p = loaded.policy
    assert p.delta == 1e-5 and p.epsilon_ceiling == 1.0 and len(p.sites) == 4
    assert len(loaded.sha256) == 64
    assert loaded.sha256 == hashlib.sha256(loaded.canonical_json.encode()).hexdigest()


def test_hash_ignores_formatting_but_not_values(tmp_path: Path) -> None:
    data = default_data()
    f = write(tmp_path, "# a comment\n" + yaml.safe_dump(data, default_flow_style=True))
    assert load_policy(f).sha256 == load_policy().sha256
    data["rounds"] = 11
    assert parse_policy(data, "x").sha256 != load_policy().sha256


def test_policy_hash_is_of_canonical_content() -> None:
    loaded = load_policy()
    assert policy_sha256(loaded.policy) == loaded.sha256
    assert canonical_json(loaded.policy) == json.dumps(
        json.loads(loaded.canonical_json), sort_keys=True, separators=(",", ":"))


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy(tmp_path / "missing.yaml")
    bad = write(tmp_path, "delta: [1,\n", "bad.yaml")
    with pytest.raises(PolicyError, match=r"bad\.yaml: not valid YAML"):
        load_policy(bad)
    write(tmp_path, "- 1\n- 2\n", "bad.yaml")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(bad)


def test_a_site_policy_is_not_a_consortium_policy(tmp_path: Path) -> None:
    site = write(tmp_path, "site: hungary\nepsilon_ceiling: 2.0\n", "hungary.yaml")
    with pytest.raises(PolicyError, match="this is a site policy"):
        load_policy(site)
    assert isinstance(load_any_policy(site), LoadedSitePolicy)
    assert isinstance(load_any_policy(load_policy().source), LoadedPolicy)
    assert load_site_policy(site).policy.epsilon_ceiling == 2.0


def test_policy_from_canonical_accepts_its_own_json_only() -> None:
    loaded = load_policy()
    back = policy_from_canonical(loaded.canonical_json, loaded.sha256, "instruction")
    assert back.policy == loaded.policy and back.sha256 == loaded.sha256
    with pytest.raises(PolicyError, match="does not match its hash"):
        policy_from_canonical(loaded.canonical_json, "0" * 64, "instruction")
    pretty = json.dumps(json.loads(loaded.canonical_json), indent=1, sort_keys=True)
    with pytest.raises(PolicyError, match="not in canonical form"):
        policy_from_canonical(pretty, hashlib.sha256(pretty.encode()).hexdigest(), "i")
    with pytest.raises(PolicyError, match="not JSON"):
        policy_from_canonical("{", hashlib.sha256(b"{").hexdigest(), "i")
    tampered = loaded.canonical_json.replace('"rounds":20', '"rounds":1000')
    assert tampered != loaded.canonical_json
    with pytest.raises(PolicyError, match="does not match its hash"):
        policy_from_canonical(tampered, loaded.sha256, "i")


def test_canonical_json_of_an_invalid_policy_is_refused_even_with_its_hash() -> None:
    data = json.loads(load_policy().canonical_json)
    data["dp"]["max_grad_norm"] = -1.0
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    with pytest.raises(PolicyError, match=r"instruction: dp\.max_grad_norm"):
        policy_from_canonical(text, hashlib.sha256(text.encode()).hexdigest(), "instruction")


# -- property tests -------------------------------------------------------------------------

# YAML fragments that reach the corners of the strict loader: anchors, aliases, tags, keys
# that are collections, flow and block styles, numbers YAML 1.1 and 1.2 read differently.
_FRAGMENTS = [
    "site: ", "delta: ", "dp:", "secagg:", "sites: ", "version: ", "rounds: ", "peers: ",
    "epsilon_ceiling: ", "  ", "\n", "- ", "? ", ": ", "[", "]", "{", "}", ", ", "&a ", "*a",
    "!!set ", "!!binary ", "!!omap ", "!!python/tuple ", "!!float ", "!!int ", "!!str ",
    "1e-5", ".inf", ".nan", "yes", "null", "~", "0x1F", "1_000", "2024-01-01", "2001-02-30",
    "<<: ", "=", "hungary",
    "'q'", '"\\u00e9"', "#c", "---", "...", "%YAML 1.1", "|", ">", "\t", "\x00", "\ufeff",
    "-1", "3", "0.5", "1.0e-5",
]
yaml_like = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join)
arbitrary_input = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(str.encode),
    yaml_like.map(str.encode),
    yaml_like.map(lambda s: s.encode("utf-16")),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=arbitrary_input)
@example(data=b"? !!set {a: null}\n: 1\n")
@example(data=b"a: " + b"[" * 5000)
@example(data=b"site: hungary\ndelta: 1e400\n")
@example(data=b"{1.5: x, null: y, 2024-01-01: z}\n")
@example(data=b"!!float")
@example(data=b"delta: 2001-02-30\n")
def test_the_loader_raises_nothing_but_policy_error(tmp_path: Path, data: bytes) -> None:
    file = tmp_path / "fuzz.yaml"
    file.write_bytes(data)
    for load in (load_policy, load_site_policy, load_any_policy):
        try:
            load(file)
        except PolicyError as exc:
            assert str(exc).startswith(str(file)), str(exc)


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid consortium policy as plain data, drawn across the schema's ranges."""
    sites = draw(st.lists(st.from_regex(SITE_ID_PATTERN, fullmatch=True), min_size=2,
                          max_size=8, unique=True))
    min_sites = draw(st.integers(2, len(sites)))
    modulus = 2 ** draw(st.integers(5, MAX_MODULUS.bit_length() - 1))
    quantization = draw(st.integers(2, (modulus - 1) // len(sites)))
    if min_sites >= 3 and draw(st.booleans()):
        shares: int | float = draw(st.integers(1, (min_sites - 1) // 2)) * 2 + 1
        threshold: int | float = draw(st.integers(2, int(shares) - 1))
    else:
        shares = draw(st.floats(0.01, 1.0))
        threshold = draw(st.one_of(st.floats(0.01, 1.0), st.integers(2, 50)))
    lifetime = draw(st.floats(0.01, 1000))
    ceiling = draw(st.floats(0.01, lifetime))
    dp: dict[str, Any] = {
        "max_grad_norm": draw(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False)),
        "sample_rate": 1 / draw(st.integers(1, 64)),
        "local_epochs": draw(st.integers(1, 100)),
        "learning_rate": draw(st.one_of(st.floats(1e-6, 100), st.integers(1, 100))),
        "accountant": draw(st.sampled_from(["rdp", "prv"])),
    }
    if draw(st.booleans()):
        dp["noise_multiplier"] = draw(st.floats(1e-3, 1000))
    else:
        dp["target_epsilon"] = draw(st.floats(0.01, ceiling))
    return {
        "version": 1, "delta": draw(st.floats(1e-15, 0.999)), "epsilon_ceiling": ceiling,
        "lifetime_epsilon_ceiling": lifetime, "rounds": draw(st.integers(1, 10_000)),
        "min_sites": min_sites, "sites": sites, "dp": dp,
        "secagg": {"num_shares": shares, "reconstruction_threshold": threshold,
                   "timeout_s": draw(st.floats(0.1, 3600)),
                   "max_weight": draw(st.floats(1, 1e9)),
                   "clipping_range": draw(st.floats(1e-3, 1e6)),
                   "quantization_range": quantization, "modulus_range": modulus},
        "convergence": {"target_accuracy": draw(st.none() | st.floats(0.01, 1.0)),
                        "patience": draw(st.none() | st.integers(1, 100)),
                        "min_delta": draw(st.floats(0, 1))},
    }


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=valid_policies())
def test_valid_policies_round_trip_through_canonical_json_and_yaml(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    loaded = parse_policy(data, "generated")
    back = policy_from_canonical(loaded.canonical_json, loaded.sha256, "instruction")
    assert back.policy == loaded.policy
    assert back.sha256 == loaded.sha256 and back.canonical_json == loaded.canonical_json
    # The same policy written out again (JSON is YAML: PyYAML's YAML 1.1 dumper would leave a
    # site id such as "1e5" unquoted, which YAML 1.2 and this loader read as a float) hashes
    # the same.
    file = write(tmp_path, "# generated\n" + json.dumps(data, indent=2))
    assert load_policy(file).sha256 == loaded.sha256


def test_a_value_change_changes_the_hash_and_a_key_order_change_does_not() -> None:
    data = default_data()
    reordered = dict(reversed(list(data.items())))
    assert parse_policy(reordered, "a").sha256 == parse_policy(data, "b").sha256
    assert parse_policy(with_value(("dp", "learning_rate"), 0.25), "c").sha256 != \
        parse_policy(data, "d").sha256
