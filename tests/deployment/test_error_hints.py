"""Refusals that say what to do: a policy that does not fit the sites given, SecAgg+ shares
above ``min_sites``, and each offending value shown once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consortium.cli import main as consortium_main
from consortium.run.inputs import resolve_inputs
from policies.errors import PolicyError
from policies.example import load_example
from policies.loader import parse_policy
from tests.cli.invoke import invoke
from tests.policies.policy_data import default_data, with_value


def refusal(data: dict[str, object]) -> str:
    with pytest.raises(PolicyError) as err:
        parse_policy(data, "p.yaml")
    return str(err.value)


def test_three_sites_under_the_default_policy_are_told_to_give_a_policy_that_fits() -> None:
    example = load_example("heart-disease")
    data = [f"{s}={p}" for s, p in list(example.data.items())[:3]]
    with pytest.raises(PolicyError) as err:
        resolve_inputs(task=example.task, data=data)
    message = str(err.value)
    assert "min_sites (4) exceeds the number of member sites (3)" in message
    hint = re.search(r"`consortium policy new (--sites \S+) --from (\S+) --output policy\.yaml`",
                     message)
    assert hint is not None, message
    assert hint.group(1) == "--sites " + ",".join(s for s, _ in [d.split("=", 1) for d in data])


def test_the_policy_the_hint_writes_fits_the_sites_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example("heart-disease")
    data = [f"{s}={p}" for s, p in list(example.data.items())[:3]]
    draft = tmp_path / "policy.yaml"
    done = invoke(consortium_main, "consortium", ["policy", "new", "--sites",
                  ",".join(example.sites[:3]), "--output", str(draft)], capsys, monkeypatch)
    assert done.code == 0, done.err
    inputs = resolve_inputs(task=example.task, data=data, policy=draft)
    assert inputs.policy.policy.min_sites == 3
    assert list(inputs.policy.policy.sites) == list(example.sites[:3])


def test_shares_above_min_sites_name_the_fractional_form() -> None:
    data = with_value(("min_sites",), 2)
    message = refusal(data)
    assert "num_shares (3) exceeds min_sites (2)" in message
    assert re.search(r"fraction of the sampled sites \(e\.g\. num_shares: 1\.0\)", message)
    message = refusal(with_value(("secagg", "num_shares"), 5, with_value(("min_sites",), 4)))
    assert "or an odd whole number from 3 to 3" in message


@pytest.mark.parametrize(("path", "value", "shown"), [
    (("secagg", "num_shares"), 2, "(got 2)"),
    (("secagg", "reconstruction_threshold"), 1, "(got 1)"),
])
def test_each_offending_value_is_shown_once(path: tuple[str, ...], value: int,
                                            shown: str) -> None:
    message = refusal(with_value(path, value, default_data()))
    assert message.count(shown) == 1, message
    assert "(got {" not in message, message  # not a dump of the whole section


def test_a_value_our_rule_does_not_quote_is_still_shown(tmp_path: Path) -> None:
    message = refusal(with_value(("min_sites",), "four"))
    assert "(got 'four')" in message
