"""The site's preflight answer: the admission checks of a round, with real data, policies and
ledgers, and nothing trained, spent or written (no ledger row, not even a refusal)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

from site_node import client as client_mod
from site_node.client import SiteClient
from site_node.client_app import preflight_mod
from site_node.home import SiteHome
from site_node.model import initial_weights
from site_node.preflight import answer
from site_node.privacy.guard import SiteGuard
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from site_node.protocol import wire
from tests.site_node.data_files import single_class
from tests.site_node.factories import instruction, mech, policy, settings, site_home
from tests.site_node.test_client import HEART_RUN, ledger_state


@pytest.fixture(autouse=True)
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a preflight must not train")

    monkeypatch.setattr(client_mod, "train_dp", forbidden)


def _spent_lifetime(home: SiteHome, tmp_path: Path) -> Path:
    """A site policy with a lifetime ceiling of 1 and a ledger already near it; its path."""
    own = tmp_path / "p.yaml"
    own.write_text("site: hungary\nlifetime_epsilon_ceiling: 1.0\nepsilon_ceiling: 1.0\n"
                   "dp:\n  target_epsilon: 1.0\n", encoding="utf-8")
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        for rnd in range(1, 4):
            ledger.record(run_id="earlier", rnd=rnd, policy_sha256="p", mechanism=mech(0.8),
                          delta=1e-5)
    return own


def test_a_site_that_would_train_admits_and_writes_no_ledger(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    reply = answer(settings(home), instruction().to_config())
    assert reply == {wire.SITE: "hungary", wire.ADMITS: True, wire.MASK_VERSION: 2}
    assert not (home.state_dir / LEDGER_FILE).exists()


@pytest.mark.parametrize(("case", "reason"), [
    ("more rows than max_weight", "exceed secagg.max_weight 100"),
    ("batch below one", "expected batch of"),
    ("data do not fit", "single class"),
    ("no receipt key", "no usable receipt key"),
    ("not a member", "not a member"),
    ("bad instruction", "lacks"),
    ("another mask version", "site hungary refuses: the consortium unmasks with SecAgg+ mask "
                             "version 3, this node masks with SecAgg+ mask version 2"),
    ("no mask version", "the consortium unmasks with no SecAgg+ mask version (a release"),
])
def test_a_predictable_refusal_is_answered_and_nothing_is_written(
        tmp_path: Path, case: str, reason: str) -> None:
    home = site_home(tmp_path)
    node = settings(home)
    config = instruction().to_config()
    if case == "more rows than max_weight":
        config = instruction(loaded=policy(secagg__max_weight=100)).to_config()
    elif case == "batch below one":
        config = instruction(loaded=policy(dp__sample_rate=0.001)).to_config()
    elif case == "data do not fit":
        node = settings(home, data_path=single_class(tmp_path, "hungary"))
    elif case == "no receipt key":
        home.receipt_key.unlink()
    elif case == "not a member":
        config = instruction(loaded=policy(sites=["cleveland", "long_beach", "switzerland",
                                                  "mayo"])).to_config()
    elif case == "bad instruction":
        del config[wire.ROUND]
    elif case == "another mask version":
        config[wire.MASK_VERSION] = 3
    elif case == "no mask version":
        del config[wire.MASK_VERSION]
    reply = answer(node, config)
    assert reply[wire.SITE] == "hungary" and reply[wire.ADMITS] is False
    assert reply[wire.MASK_VERSION] == 2  # the site states its own version either way
    assert reason in str(reply[wire.REFUSAL])
    assert wire.REFUSAL_FINAL not in reply  # only an admission (ε) refusal is final
    assert not (home.state_dir / LEDGER_FILE).exists()


def test_the_ceilings_are_projected_over_the_whole_run_read_only(tmp_path: Path) -> None:
    """The same decision as the round's admission, but the preflight records no refusal: a
    round-1 fit of the same run refuses for the same reason and records it."""
    home = site_home(tmp_path)
    node = settings(home, policy_path=_spent_lifetime(home, tmp_path))
    first = instruction("run-p", 1)
    reply = answer(node, first.to_config())
    assert reply[wire.ADMITS] is False and reply[wire.REFUSAL_FINAL] is True
    assert "lifetime ceiling 1" in str(reply[wire.REFUSAL])
    assert ledger_state(home) == (3, 0)
    _, _, fitted = SiteClient(node).fit(initial_weights(HEART_RUN, 0), first.to_config())
    assert fitted[wire.REFUSAL] == reply[wire.REFUSAL]
    assert ledger_state(home) == (3, 1)
    again = answer(node, instruction("run-p", 2, sigma=first.noise_multiplier).to_config())
    assert "keeps refusing" in str(again[wire.REFUSAL]) and again[wire.REFUSAL_FINAL] is True


def test_a_round_trained_before_an_interruption_is_admitted(tmp_path: Path) -> None:
    """A resumed run asks again for a round the site trained: it re-sends, never re-trains."""
    home = site_home(tmp_path)
    node = settings(home)
    ins = instruction("run-r", 1)
    guard = SiteGuard(node)
    admitted = guard.admit(ins, num_examples=73)
    guard.record(admitted, weights=initial_weights(HEART_RUN, 0),
                 mechanism=admitted.plan.mechanism, num_examples=73)
    assert answer(node, ins.to_config())[wire.ADMITS] is True
    assert ledger_state(home) == (1, 0)


def _query(config: dict[str, bool | bytes | float | int | str] | None) -> Message:
    content = RecordDict({} if config is None else {wire.PREFLIGHT_RECORD: ConfigRecord(
        {k: v for k, v in config.items()})})
    return _message(content, MessageType.QUERY)


def _message(content: RecordDict, message_type: str) -> Message:
    """A message as the node receives it (the SuperLink set its metadata)."""
    meta = Metadata(run_id=1, message_id="m1", src_node_id=0, dst_node_id=1,
                    reply_to_message_id="", group_id="preflight", created_at=time.time(),
                    ttl=60.0, message_type=message_type)
    return Message(content, metadata=meta)  # type: ignore[call-overload,no-any-return]


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(),
                   run_config={})


def test_the_client_app_answers_a_query_without_reaching_the_client(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    mod = preflight_mod([settings(home)])

    def legacy(message: Message, context: Context) -> Message:
        raise AssertionError("a query must not reach the legacy client")

    config = instruction(loaded=policy(secagg__max_weight=100)).to_config()
    reply = mod(_query(config), _context(), legacy)
    record = reply.content.config_records[wire.PREFLIGHT_RECORD]
    assert record[wire.SITE] == "hungary" and record[wire.ADMITS] is False
    assert "max_weight" in str(record[wire.REFUSAL])
    empty = mod(_query(None), _context(), legacy).content.config_records[wire.PREFLIGHT_RECORD]
    assert empty[wire.ADMITS] is False and "lacks" in str(empty[wire.REFUSAL])


def test_other_messages_pass_through_the_preflight_mod(tmp_path: Path) -> None:
    mod = preflight_mod([settings(site_home(tmp_path))])
    train = _message(RecordDict(), MessageType.TRAIN)
    seen: list[Message] = []

    def legacy(message: Message, context: Context) -> Message:
        seen.append(message)
        return message

    assert mod(train, _context(), legacy) is train and seen == [train]
