"""A refusal that can be predicted stops the run before any site spends: the preflight's
decision (pure, with a property test), its exchange over a grid (real Flower messages,
attributed like training replies), and the round loop (the workflow harness): a preflight
short of ``min_sites`` stops the run before any round; final refusals that leave fewer than
``min_sites`` sites able to train stop it before the next round."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, Message, Metadata, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given
from hypothesis import strategies as st

from consortium.audit.verify import verify_store
from consortium.run import preflight_query
from consortium.run.attribution import Reply
from consortium.run.grid import PacedGrid
from consortium.run.preflight import STOP_PREFLIGHT, Answer, decide, shortfall
from consortium.run.preflight_query import ask
from consortium.store.records import RUN_STOPPED
from site_node.protocol import wire
from tests.consortium.run.harness import Harness, policy_variant

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
TOO_MANY = "site switzerland refuses: its 1050 training examples exceed secagg.max_weight 1000"


def admit(site: str) -> Answer:
    return Answer(site=site, admits=True)


def refuse(site: str, reason: str, *, final: bool = False) -> Answer:
    return Answer(site=site, admits=False, reason=reason, final=final)


# -- the decision -----------------------------------------------------------------------------

def test_enough_admitting_sites_let_the_run_go_on() -> None:
    result = decide(rnd=1, members=SITES, min_sites=3,
                    answers=[admit(s) for s in SITES[:3]] + [refuse("switzerland", TOO_MANY)])
    assert result.stop_reason is None
    assert result.admitting == SITES[:3] and result.refusals == {"switzerland": TOO_MANY}


def test_too_few_admitting_sites_stop_the_run_naming_each_site_and_why() -> None:
    result = decide(rnd=1, members=SITES, min_sites=4,
                    answers=[admit(s) for s in SITES[:2]]
                    + [refuse("switzerland", TOO_MANY, final=False)])
    assert result.stop_reason == (
        f"{STOP_PREFLIGHT}: only 2 of 4 member site(s) would admit round 1 onwards, the policy "
        "requires min_sites=4; no site trained or spent anything; switzerland refused: "
        f"{TOO_MANY}; long_beach did not answer")
    assert result.silent == ("long_beach",) and result.final == frozenset()


def test_an_answer_for_a_site_outside_the_run_counts_for_nothing() -> None:
    result = decide(rnd=2, members=SITES[:2], min_sites=2,
                    answers=[admit("cleveland"), admit("mayo")])
    assert result.admitting == ("cleveland",) and result.silent == ("hungary",)
    assert result.stop_reason is not None and "round 2" in result.stop_reason


ANSWER = st.sampled_from(["admit", "refuse", "final", "silent"])


@given(st.lists(ANSWER, min_size=len(SITES), max_size=len(SITES)),
       st.integers(min_value=1, max_value=len(SITES)))
def test_the_run_stops_exactly_when_fewer_than_min_sites_would_admit(
        kinds: list[str], min_sites: int) -> None:
    answers = [admit(s) if k == "admit" else refuse(s, f"{s} says no", final=k == "final")
               for s, k in zip(SITES, kinds, strict=True) if k != "silent"]
    result = decide(rnd=1, members=SITES, min_sites=min_sites, answers=answers)
    admitting = [s for s, k in zip(SITES, kinds, strict=True) if k == "admit"]
    assert list(result.admitting) == admitting
    assert (result.stop_reason is None) == (len(admitting) >= min_sites)
    assert result.final == {s for s, k in zip(SITES, kinds, strict=True) if k == "final"}
    if result.stop_reason is not None:
        for s, k in zip(SITES, kinds, strict=True):
            if k in ("refuse", "final"):
                assert f"{s} refused: {s} says no" in result.stop_reason
            if k == "silent":
                assert f"{s} did not answer" in result.stop_reason


@given(st.sets(st.sampled_from(SITES)), st.integers(min_value=1, max_value=len(SITES)))
def test_the_run_cannot_go_on_once_too_few_sites_have_not_refused_for_good(
        gone: set[str], min_sites: int) -> None:
    why = shortfall(members=SITES, finally_refused={s: f"{s} is out" for s in gone},
                    min_sites=min_sites)
    assert (why is None) == (len(SITES) - len(gone) >= min_sites)
    if why is not None:
        assert all(f"{s} refused: {s} is out" in why for s in gone)


# -- the exchange -----------------------------------------------------------------------------

class QueryGrid(PacedGrid):
    """A grid whose nodes answer the preflight query with ``respond(node, config)``."""

    def __init__(self, nodes: list[int], respond: Callable[[int, dict[str, Any]], Any]) -> None:
        super().__init__(grid=None)  # type: ignore[arg-type]
        self.nodes, self.respond = nodes, respond
        self.sent: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return self.nodes

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        self.sent = list(messages)
        replies = []
        for m in self.sent:
            config = dict(m.content.config_records[wire.PREFLIGHT_RECORD])
            got = self.respond(m.metadata.dst_node_id, config)
            if got is not None:
                meta = Metadata(run_id=1, message_id="r", src_node_id=m.metadata.dst_node_id,
                                dst_node_id=0, reply_to_message_id="q", group_id="preflight",
                                created_at=time.time(), ttl=60.0,
                                message_type=m.metadata.message_type)
                replies.append(Message(RecordDict(got), metadata=meta))  # type: ignore[call-overload]
        return replies


@pytest.fixture
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process (a message names its run and sender)."""
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


@pytest.mark.usefixtures("task_identity")
def test_every_node_is_asked_with_the_round_instruction_and_answers_are_attributed(
        harness: Harness) -> None:
    h = harness
    node_of = h.nodes
    site_of = {n: s for s, n in node_of.items()}

    def respond(node: int, config: dict[str, Any]) -> dict[str, ConfigRecord] | None:
        site = site_of[node]
        assert config == h.plan.fit_config(1)
        if site == "cleveland":
            return None  # no answer in time
        if site == "hungary":  # claims another site than its enrolled node's
            return {wire.PREFLIGHT_RECORD: ConfigRecord({wire.SITE: "long_beach",
                                                         wire.ADMITS: True})}
        if site == "long_beach":
            return {wire.PREFLIGHT_RECORD: ConfigRecord({wire.SITE: site, wire.ADMITS: "yes"})}
        return {wire.PREFLIGHT_RECORD: ConfigRecord({
            wire.SITE: site, wire.ADMITS: False, wire.REFUSAL: TOO_MANY,
            wire.REFUSAL_FINAL: True, wire.MASK_VERSION: 2})}

    grid = QueryGrid(sorted(site_of), respond)
    answers, rejections = ask(grid, instruction=h.plan.fit_config(1),
                              attribution=h.attribution, min_sites=4, members=4, timeout=5.0)
    assert {m.metadata.message_type for m in grid.sent} == {"query"}
    assert sorted(m.metadata.dst_node_id for m in grid.sent) == sorted(site_of)
    assert answers == [refuse("switzerland", TOO_MANY, final=True)]
    reasons = {r.node_id: r.reason for r in rejections}
    assert "enrolled as site 'hungary' but its reply claims 'long_beach'" in reasons[
        node_of["hungary"]]
    assert "malformed preflight answer" in reasons[node_of["long_beach"]]


@pytest.mark.usefixtures("task_identity")
def test_an_answer_without_a_mask_version_is_read_as_none(harness: Harness) -> None:
    """A site release before mask versions admits without stating one."""
    site_of = {n: s for s, n in harness.nodes.items()}

    def respond(node: int, config: dict[str, Any]) -> dict[str, ConfigRecord] | None:
        version = {"cleveland": 2, "hungary": 1}.get(site_of[node])
        extra = {} if version is None else {wire.MASK_VERSION: version}
        return {wire.PREFLIGHT_RECORD: ConfigRecord({wire.SITE: site_of[node], wire.ADMITS: True,
                                                     **extra})}

    answers, _ = ask(QueryGrid(sorted(site_of), respond), instruction=harness.plan.fit_config(1),
                     attribution=harness.attribution, min_sites=4, members=4,
                     timeout=5.0)
    assert {a.site: a.mask_version for a in answers} == {
        "cleveland": 2, "hungary": 1, "long_beach": None, "switzerland": None}


class RegisteringGrid(QueryGrid):
    """Nodes that show up one read at a time, as when an engine is still registering them."""

    def __init__(self, nodes: list[int], first: int, respond: Callable[..., Any]) -> None:
        super().__init__(nodes, respond)
        self.shown, self.reads = first, 0

    def get_node_ids(self) -> Iterable[int]:
        self.reads += 1
        shown, self.shown = self.shown, min(self.shown + 1, len(self.nodes))
        return self.nodes[:shown]


@pytest.mark.usefixtures("task_identity")
@pytest.mark.parametrize("members", [4, 5])
def test_the_query_reaches_nodes_still_registering_once_min_sites_are_connected(
        harness: Harness, monkeypatch: pytest.MonkeyPatch, members: int) -> None:
    """min_sites connected is not enough while more nodes keep joining; a member that never
    connects costs one wait interval, not the timeout."""
    monkeypatch.setattr(preflight_query, "NODE_WAIT_INTERVAL_S", 0.01)
    site_of = {n: s for s, n in harness.nodes.items()}

    def respond(node: int, config: dict[str, Any]) -> dict[str, ConfigRecord]:
        return {wire.PREFLIGHT_RECORD: ConfigRecord({wire.SITE: site_of[node], wire.ADMITS: True,
                                                     wire.MASK_VERSION: 2})}

    grid = RegisteringGrid(sorted(site_of), 2, respond)
    started = time.monotonic()
    answers, _ = ask(grid, instruction=harness.plan.fit_config(1),
                     attribution=harness.attribution, min_sites=3, members=members,
                     timeout=30.0)
    assert sorted(a.site for a in answers) == sorted(SITES)
    assert grid.reads == (3 if members == 4 else 4)  # 5: one more read shows nobody joined
    assert time.monotonic() - started < 5.0


def test_a_site_with_another_or_no_mask_version_stops_the_run_naming_it() -> None:
    answers = [admit("cleveland"), admit("switzerland"),
               Answer(site="hungary", admits=True, mask_version=1),
               Answer(site="long_beach", admits=True, mask_version=None)]
    result = decide(rnd=1, members=SITES, min_sites=2, answers=answers)  # 2 would be enough
    assert result.stop_reason is not None and result.stop_reason.startswith(STOP_PREFLIGHT)
    assert result.admitting == ("cleveland", "switzerland")
    assert "site hungary masks with SecAgg+ mask version 1, the consortium unmasks with " \
           "SecAgg+ mask version 2" in result.stop_reason
    assert "site long_beach masks with no SecAgg+ mask version" in result.stop_reason
    assert "no site trained or spent anything" in result.stop_reason
    assert set(result.refusals) == {"hungary", "long_beach"}


# -- the round loop ---------------------------------------------------------------------------


def test_a_site_with_another_mask_version_is_refused_before_any_site_trains(
        harness: Harness) -> None:
    h = harness
    h.answers = [admit(s) for s in SITES[:3]] + [
        Answer(site="switzerland", admits=True, mask_version=1)]
    outcome = h.run()
    assert outcome.status == RUN_STOPPED and outcome.reason.startswith(STOP_PREFLIGHT)
    assert "site switzerland masks with SecAgg+ mask version 1" in outcome.reason
    assert h.preflights == [1] and h.fit_calls == 0
    assert h.count("rounds") == 0 and h.count("receipts") == 0

def test_a_predictable_refusal_stops_the_run_before_any_site_trains(harness: Harness) -> None:
    h = harness  # min_sites = 4
    h.answers = [admit(s) for s in SITES[:3]] + [refuse("switzerland", TOO_MANY)]
    outcome = h.run()
    assert outcome.status == RUN_STOPPED and outcome.reason.startswith(STOP_PREFLIGHT)
    assert f"switzerland refused: {TOO_MANY}" in outcome.reason
    assert h.preflights == [1] and h.fit_calls == 0
    assert h.count("rounds") == 0 and h.count("receipts") == 0
    (logged,) = [e.payload for e in h.log.entries(h.plan.run_id) if e.kind == "preflight"]
    assert logged["refusals"] == {"switzerland": TOO_MANY}
    assert logged["admitting"] == list(SITES[:3]) and logged["stop_reason"] == outcome.reason
    verify_store(h.plan.store_path)  # a refusal is not a security event


def test_final_refusals_stop_the_run_once_too_few_sites_can_train(
        make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    h = make_harness(policy_path=policy_variant(tmp_path, ("min_sites: 4", "min_sites: 3")))
    assert h.plan.rounds == 3

    def script(rnd: int) -> list[Reply]:
        out = [h.refusal("switzerland", "switzerland: ε ceiling", final=True)]
        if rnd == 1:
            return out + [h.trained(s, rnd) for s in SITES[:3]]
        return out + [h.trained(s, rnd) for s in SITES[:2]] + [
            h.refusal("long_beach", "long_beach: ε ceiling", final=True)]

    outcome = h.run(script)
    assert h.fit_calls == 2  # round 3 is never asked for
    assert outcome.status == RUN_STOPPED and (outcome.rounds_ok, outcome.rounds_failed) == (1, 1)
    assert outcome.reason.startswith("only 2 member site(s) can still train, the policy "
                                     "requires min_sites=3")
    assert "long_beach refused: long_beach: ε ceiling" in outcome.reason
    assert "switzerland refused: switzerland: ε ceiling" in outcome.reason


def test_refusals_that_are_not_final_do_not_stop_the_run(
        make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    h = make_harness(policy_path=policy_variant(tmp_path, ("min_sites: 4", "min_sites: 3")))

    def script(rnd: int) -> list[Reply]:
        return [h.trained(s, rnd) for s in SITES[:2]] + [
            h.refusal(s, f"{s}: data unreadable") for s in SITES[2:]]

    outcome = h.run(script)
    assert h.fit_calls == 3 and outcome.rounds_failed == 3  # each round failed, none stopped


def test_a_preflight_final_refusal_counts_for_the_rest_of_the_run(
        make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    """Switzerland refused for good in the preflight and is silent afterwards; once long_beach
    refuses for good too, only two sites can train: round 3 is never asked for."""
    h = make_harness(policy_path=policy_variant(tmp_path, ("min_sites: 4", "min_sites: 3")))
    h.answers = [admit(s) for s in SITES[:3]] + [refuse("switzerland", "ε", final=True)]

    def script(rnd: int) -> list[Reply]:
        if rnd == 1:
            return [h.trained(s, rnd) for s in SITES[:3]]
        return [h.trained(s, rnd) for s in SITES[:2]] + [
            h.refusal("long_beach", "ε too", final=True)]

    outcome = h.run(script)
    assert h.fit_calls == 2 and outcome.status == RUN_STOPPED
    assert outcome.reason.endswith("switzerland refused: ε")
