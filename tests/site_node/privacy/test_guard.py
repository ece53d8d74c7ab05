"""The site's guard: its own policy (never an example by name), tighten-only, admit, sign."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policies.loader import example_site_policy_path
from site_node.errors import ConfigError, Refusal
from site_node.privacy import accountant, budget
from site_node.privacy.guard import SiteGuard
from site_node.privacy.ledger import SiteLedger
from site_node.protocol import keys
from site_node.protocol.receipt import update_sha256
from site_node.settings import NodeSettings
from tests.site_node.factories import instruction, policy, settings, site_home

WEIGHTS = [np.zeros((1, 3), np.float32), np.zeros(1, np.float32)]


def write_policy(tmp_path: Path, text: str, name: str = "site-policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def events(state_dir: Path) -> int:
    with SiteLedger.in_state_dir(state_dir) as ledger:
        return len(ledger.events())


@pytest.mark.parametrize(("text", "field", "values"), [
    ("epsilon_ceiling: 5.0\n", "epsilon_ceiling", ("5.0", "1.0")),
    ("delta: 0.001\n", "delta", ("0.001", "1e-05")),
    ("dp:\n  max_grad_norm: 4.0\n", "dp.max_grad_norm", ("4.0", "0.1")),
    ("min_sites: 2\n", "min_sites", ("2", "4")),
])
def test_a_loosening_site_policy_is_refused_never_clamped(
    tmp_path: Path, text: str, field: str, values: tuple[str, str]
) -> None:
    home = site_home(tmp_path)
    path = write_policy(tmp_path, "site: hungary\n" + text)
    guard = SiteGuard(settings(home, policy_path=path))
    with pytest.raises(Refusal) as info:
        guard.admit(instruction(), num_examples=100)
    msg = str(info.value)
    assert "site hungary refuses" in msg and str(path) in msg and field in msg
    assert all(v in msg for v in values)
    assert events(home.state_dir) == 0


def test_example_policies_are_never_applied_by_site_name(tmp_path: Path) -> None:
    assert example_site_policy_path("cleveland").is_file()
    node = NodeSettings(site="cleveland", data_path=None, state_dir=tmp_path / "state",
                        policy_path=None)
    guard = SiteGuard(node)
    assert guard.policy is None
    assert guard.effective(instruction()).epsilon_ceiling == 1.0  # the consortium's


def test_a_node_configured_with_the_example_policy_gets_it(tmp_path: Path) -> None:
    example = example_site_policy_path("cleveland")
    guard = SiteGuard(NodeSettings(site="cleveland", data_path=None,
                                   state_dir=tmp_path / "state", policy_path=example))
    assert guard.policy is not None and guard.policy.source == str(example)
    eff = guard.effective(instruction())
    assert eff.epsilon_ceiling == 0.8 and eff.site_policy_sha256 == guard.policy.sha256


def test_policy_yaml_in_the_state_dir_is_the_sites_own(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    home.policy.write_text("site: hungary\nepsilon_ceiling: 0.7\ndp:\n  target_epsilon: 0.7\n",
                           encoding="utf-8")
    guard = SiteGuard(settings(home))
    assert guard.policy is not None and guard.effective(instruction()).epsilon_ceiling == 0.7


def test_a_policy_for_another_site_or_an_invalid_one_is_a_config_error(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    other = write_policy(tmp_path, "site: cleveland\n")
    with pytest.raises(ConfigError, match="policy is for site 'cleveland', not 'hungary'"):
        SiteGuard(settings(home, policy_path=other))
    bad = write_policy(tmp_path, "site: hungary\nepsilon_ceiling: .inf\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: epsilon_ceiling"):
        SiteGuard(settings(home, policy_path=bad))
    with pytest.raises(ConfigError, match="cannot read file"):
        SiteGuard(settings(home, policy_path=tmp_path / "missing.yaml"))


def test_a_site_that_is_not_a_member_refuses(tmp_path: Path) -> None:
    home = site_home(tmp_path, "mayo")
    guard = SiteGuard(settings(home))
    with pytest.raises(Refusal, match="site mayo is not a member of this consortium"):
        guard.admit(instruction(), num_examples=100)
    assert events(home.state_dir) == 0


def test_a_missing_receipt_key_is_a_refusal(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    home.receipt_key.unlink()
    with pytest.raises(Refusal, match="no usable receipt key"):
        SiteGuard(settings(home)).signing_key()
    home2 = site_home(tmp_path, "cleveland")
    home2.receipt_key.chmod(0o644)
    with pytest.raises(Refusal, match="chmod 600"):
        SiteGuard(settings(home2)).signing_key()


def test_sigma_is_never_below_the_consortiums(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    ins = instruction()
    plain = SiteGuard(settings(home))
    assert plain.plan(ins, plain.effective(ins)).noise_multiplier == ins.noise_multiplier
    tighter = write_policy(tmp_path, "site: hungary\nepsilon_ceiling: 0.5\ndp:\n"
                                     "  target_epsilon: 0.5\n")
    guard = SiteGuard(settings(home, policy_path=tighter))
    plan = guard.plan(ins, guard.effective(ins))
    assert plan.noise_multiplier > ins.noise_multiplier
    # The site's own σ meets its own target over the planned rounds.
    eps = accountant.epsilon([plan.mechanism] * ins.rounds_planned, delta=plan.delta,
                             accountant=plan.accountant)
    assert eps <= 0.5
    # A σ the consortium fixes may only be raised by the site.
    fixed = policy(dp__noise_multiplier=1.1, dp__target_epsilon=None)
    noisy = write_policy(tmp_path, "site: hungary\ndp:\n  noise_multiplier: 2.5\n", "n.yaml")
    guard = SiteGuard(settings(home, policy_path=noisy))
    ins = instruction(loaded=fixed, sigma=1.1)
    assert guard.plan(ins, guard.effective(ins)).noise_multiplier == 2.5


def test_record_appends_to_the_ledger_and_signs_a_receipt(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    guard = SiteGuard(settings(home))
    ins = instruction()
    admitted = guard.admit(ins, num_examples=100)
    signed = guard.record(admitted, weights=WEIGHTS, mechanism=admitted.plan.mechanism,
                          num_examples=123)
    signed.verify(keys.load_public_key_file(home.receipt_pub))
    r = signed.receipt
    assert (r.run_id, r.round, r.site, r.num_examples) == (ins.run_id, 1, "hungary", 123)
    assert r.policy_sha256 == ins.policy.sha256 and r.site_policy_sha256 == ""
    assert r.update_sha256 == update_sha256(WEIGHTS) and r.mechanism == admitted.plan.mechanism
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        (event,) = ledger.events()
        assert event.mechanism == admitted.plan.mechanism and event.delta == r.delta
        assert r.epsilon == budget.run_epsilon(ledger, ins.run_id, delta=r.delta,
                                               accountant_name=r.accountant)
        life = budget.lifetime(ledger)
    assert life is not None and r.lifetime_epsilon == life.epsilon


def test_the_round_is_in_the_ledger_even_if_signing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = site_home(tmp_path)
    guard = SiteGuard(settings(home))
    admitted = guard.admit(instruction(), num_examples=100)

    def lost(*args: object, **kwargs: object) -> None:
        raise ConnectionError("lost after training")

    monkeypatch.setattr("site_node.privacy.guard.Receipt.sign", lost)
    with pytest.raises(ConnectionError):
        guard.record(admitted, weights=WEIGHTS, mechanism=admitted.plan.mechanism,
                     num_examples=1)
    assert events(home.state_dir) == 1
