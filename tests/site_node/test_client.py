"""The site's Flower client, with real Opacus and a real instruction (no server needed): a
refusal is a reply of weight 0 that spends nothing; a trained round is signed and recorded.
Refusals of data that do not fit the task: tests/site_node/test_client_data.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from policies.loader import load_policy
from site_node import client as client_mod
from site_node.baseline import majority_rate
from site_node.client import FitReply, SiteClient
from site_node.data import load_site_data
from site_node.home import SiteHome
from site_node.model import initial_weights
from site_node.privacy import budget
from site_node.privacy.ledger import SiteLedger
from site_node.protocol import keys, wire
from site_node.protocol.receipt import SignedReceipt, update_sha256
from tests.site_node.data_files import heart_task, single_class, with_value
from tests.site_node.factories import instruction, mech, policy, settings, site_home

HEART = heart_task().task
#: The task as the shipped policy's members train it (its site indicator appended).
HEART_RUN = HEART.for_members(load_policy().policy.sites)


def ledger_state(home: SiteHome) -> tuple[int, int]:
    """(DP events, refusals) in the site's ledger."""
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        return len(ledger.events()), len(ledger.refusals())


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused round must not train")

    monkeypatch.setattr(client_mod, "train_dp", forbidden)


def assert_refusal(reply: FitReply, incoming: list[np.ndarray], site: str, reason: str, *,
                   final: bool = False) -> None:
    weights, n, metrics = reply
    assert weights is incoming and n == 0
    assert metrics[wire.SITE] == site
    assert set(metrics) == {wire.SITE, wire.REFUSAL} | ({wire.REFUSAL_FINAL} if final else set())
    assert metrics.get(wire.REFUSAL_FINAL, False) is final
    assert reason in str(metrics[wire.REFUSAL])


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("case", "reason"), [
    ("loosening policy", "epsilon_ceiling"),
    ("not a member", "not a member"),
    ("no receipt key", "no usable receipt key"),
    ("non-finite model", "is not finite"),
    ("bad instruction", "lacks"),
    ("non-finite data", "column chol: non-finite value"),
    ("single class", "single class"),
    ("unreadable data", "no such file or folder"),
    ("no data", "has no data"),
    ("foreign policy", "policy is for site"),
    ("model of another task", "does not fit task heart-disease"),
    ("another mask version", "the consortium unmasks with SecAgg+ mask version 1, this node "
                             "masks with SecAgg+ mask version 2"),
    ("no mask version", "the consortium unmasks with no SecAgg+ mask version"),
])
def test_a_refusal_has_weight_zero_returns_the_model_and_spends_nothing(
    tmp_path: Path, case: str, reason: str
) -> None:
    home = site_home(tmp_path)
    node = settings(home)
    config = instruction().to_config()
    incoming = initial_weights(HEART_RUN, 0)
    if case == "loosening policy":
        own = tmp_path / "p.yaml"
        own.write_text("site: hungary\nepsilon_ceiling: 9.0\n", encoding="utf-8")
        node = settings(home, policy_path=own)
    elif case == "foreign policy":
        own = tmp_path / "p.yaml"
        own.write_text("site: cleveland\n", encoding="utf-8")
        node = settings(home, policy_path=own)
    elif case == "not a member":
        config = instruction(loaded=policy(sites=["cleveland", "long_beach", "switzerland",
                                                  "mayo"])).to_config()
    elif case == "no receipt key":
        home.receipt_key.unlink()
    elif case == "non-finite model":
        incoming[0][0, 0] = np.nan
    elif case == "bad instruction":
        del config[wire.ROUND]
    elif case == "non-finite data":
        node = settings(home, data_path=with_value(tmp_path, "hungary", "chol", "inf"))
    elif case == "single class":
        node = settings(home, data_path=single_class(tmp_path, "hungary"))
    elif case == "unreadable data":
        node = settings(home, data_path=tmp_path / "missing.csv")
    elif case == "no data":
        node = replace(settings(home), data_path=None)
    elif case == "model of another task":
        incoming = [np.zeros((3, 33), np.float32), np.zeros(3, np.float32)]
    elif case == "another mask version":
        config[wire.MASK_VERSION] = 1
    elif case == "no mask version":
        del config[wire.MASK_VERSION]
    reply = SiteClient(node).fit(incoming, config)
    assert_refusal(reply, incoming, "hungary", reason)
    assert ledger_state(home)[0] == 0


@pytest.mark.usefixtures("no_training")
def test_a_refused_run_stays_refused_the_refusal_is_recorded_and_says_it_is_final(
        tmp_path: Path) -> None:
    home = site_home(tmp_path)
    own = tmp_path / "p.yaml"
    own.write_text("site: hungary\nlifetime_epsilon_ceiling: 1.0\nepsilon_ceiling: 1.0\n"
                   "dp:\n  target_epsilon: 1.0\n", encoding="utf-8")
    node = settings(home, policy_path=own)
    # The site's own target fits its ceiling, but a lifetime already near it does not.
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        for rnd in range(1, 4):
            ledger.record(run_id="earlier", rnd=rnd, policy_sha256="p", mechanism=mech(0.8),
                          delta=1e-5)
    first = instruction("run-x", 1)
    incoming = initial_weights(HEART_RUN, 0)
    assert_refusal(SiteClient(node).fit(incoming, first.to_config()), incoming, "hungary",
                   "lifetime ceiling", final=True)
    later = instruction("run-x", 2, sigma=first.noise_multiplier)
    assert_refusal(SiteClient(node).fit(incoming, later.to_config()), incoming, "hungary",
                   "keeps refusing", final=True)
    assert ledger_state(home) == (3, 2)


def test_an_accepted_round_returns_a_verified_receipt_matching_the_ledger(tmp_path: Path
                                                                          ) -> None:
    home = site_home(tmp_path)
    ins = instruction("run-ok", 1)
    incoming = initial_weights(HEART_RUN, 0)
    client = SiteClient(settings(home))
    weights, n, metrics = client.fit(incoming, ins.to_config())
    assert set(metrics) == {wire.SITE, wire.RECEIPT, wire.RECEIPT_SIGNATURE}
    assert metrics[wire.SITE] == "hungary"
    signed = SignedReceipt.from_wire(metrics)
    signed.verify(keys.load_public_key_file(home.receipt_pub))
    r = signed.receipt
    assert r.update_sha256 == update_sha256(weights) and r.num_examples == n > 0
    assert r.task_sha256 == ins.task.sha256 and r.version == 3 and r.privacy_unit == "record"
    assert not np.allclose(weights[0], incoming[0])
    assert r.noise_multiplier == pytest.approx(ins.noise_multiplier)
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        (event,) = ledger.events()
        assert event.mechanism == r.mechanism and event.policy_sha256 == ins.policy.sha256
        assert r.epsilon == budget.run_epsilon(ledger, "run-ok", delta=r.delta,
                                               accountant_name=r.accountant)
        life = budget.lifetime(ledger)
    assert life is not None and r.lifetime_epsilon == life.epsilon
    assert r.epsilon <= r.epsilon_ceiling


def test_evaluate_reports_loss_and_accuracy_on_the_test_split(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    config = instruction().to_config()
    loss, n, metrics = SiteClient(settings(home)).evaluate(initial_weights(HEART_RUN, 0), config)
    assert n == 73 and loss > 0
    assert metrics[wire.SITE] == "hungary" and 0.0 <= float(metrics[wire.ACCURACY]) <= 1.0
    # beside it, the share of its test split in its most frequent class
    node = settings(home)
    assert node.data_path is not None
    data = load_site_data(heart_task(), node.data_path)
    assert metrics[wire.MAJORITY_RATE] == majority_rate(data.y_test) >= 0.5


def test_a_round_already_trained_is_never_trained_twice_its_receipt_is_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run asks again for the round that was in flight at a crash: the site that
    trained it replies with weight 0 and that round's kept receipt, and spends nothing more."""
    home = site_home(tmp_path)
    ins = instruction("run-crashed", 3)
    incoming = initial_weights(HEART_RUN, 0)
    client = SiteClient(settings(home))
    _, n, first = client.fit(incoming, ins.to_config())
    assert n > 0
    monkeypatch.setattr(client_mod, "train_dp", lambda *a, **k: pytest.fail("trained twice"))
    weights, n_again, again = client.fit(incoming, ins.to_config())
    assert weights is incoming and n_again == 0
    assert "already trained round 3" in str(again[wire.REFUSAL])
    assert (again[wire.RECEIPT], again[wire.RECEIPT_SIGNATURE]) == (
        first[wire.RECEIPT], first[wire.RECEIPT_SIGNATURE])
    assert ledger_state(home) == (1, 0)


@pytest.mark.usefixtures("no_training")
def test_more_examples_than_secagg_max_weight_is_refused(tmp_path: Path) -> None:
    """SecAgg+ weighs an update by examples / max_weight: above 1 its quantisation overflows."""
    home = site_home(tmp_path)
    config = instruction(loaded=policy(secagg__max_weight=100)).to_config()
    incoming = initial_weights(HEART_RUN, 0)
    reply = SiteClient(settings(home)).fit(incoming, config)
    assert_refusal(reply, incoming, "hungary", "exceed secagg.max_weight 100")
    assert ledger_state(home) == (0, 0)


def test_no_working_gradient_mode_is_a_refusal_that_spends_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from site_node import grad_mode, precision

    monkeypatch.setattr(precision, "FLOAT32_RTOL", -1.0)  # every mode "disagrees"
    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    home = site_home(tmp_path)
    incoming = initial_weights(HEART_RUN, 0)
    reply = SiteClient(settings(home)).fit(incoming, instruction("run-x", 1).to_config())
    assert_refusal(reply, incoming, "hungary", "no Opacus per-sample gradient mode works")
    assert ledger_state(home)[0] == 0


@pytest.mark.usefixtures("no_training")
def test_a_node_asked_to_train_on_a_device_it_lacks_refuses_and_spends_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    home = site_home(tmp_path)
    incoming = initial_weights(HEART_RUN, 0)
    node = replace(settings(home), device="cuda:0")
    reply = SiteClient(node).fit(incoming, instruction("run-x", 1).to_config())
    assert_refusal(reply, incoming, "hungary", "device: cuda:0 asked for, but this machine has "
                   "no CUDA device")
    assert ledger_state(home)[0] == 0
