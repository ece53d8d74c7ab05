"""Whose reply is this? Attribution of replies to enrolled (deployment) or bound (demo) sites,
and the checks on each training reply, with real receipts signed by real Ed25519 keys."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit.registry import EnrolledKey, KeyRegistry
from consortium.run.attribution import (
    Attribution,
    RejectedReply,
    Reply,
    RoundContext,
    judge_fit,
)
from policies.loader import LoadedPolicy
from site_node.protocol import wire
from site_node.protocol.keys import fingerprint
from tests.consortium.audit_fixture import SITES, TASK, make_receipt

NODES = {site: 100 + i for i, site in enumerate(SITES)}
RUN = "run-a"


def registry_of(keys: dict[str, Ed25519PrivateKey], *, with_nodes: bool) -> KeyRegistry:
    return KeyRegistry([
        EnrolledKey(site=s, key=k.public_key(), fingerprint=fingerprint(k.public_key()),
                    node_id=NODES[s] if with_nodes else None, node_fingerprint=None,
                    mode="deployment" if with_nodes else "local-demo",
                    enrolled_seq=i + 2, enrolled_at="t")
        for i, (s, k) in enumerate(keys.items())])


def deployment(keys: dict[str, Ed25519PrivateKey]) -> Attribution:
    return Attribution(registry_of(keys, with_nodes=True), SITES, demo=False)


def demo(keys: dict[str, Ed25519PrivateKey]) -> Attribution:
    return Attribution(registry_of(keys, with_nodes=False), SITES, demo=True)


def ctx(loaded: LoadedPolicy, rnd: int = 1) -> RoundContext:
    return RoundContext(RUN, rnd, loaded.sha256, TASK.sha256)


def reply(keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy, site: str, *,
          node: int | None = None, claim: str | None = None, rnd: int = 1,
          weight: int | None = None, signer: str | None = None, **changes: Any) -> Reply:
    """A training reply from ``site``'s node, with its receipt signed by ``signer``'s key."""
    receipt = make_receipt(site, rnd, loaded.sha256, run_id=RUN, **changes)
    signed = receipt.sign(keys[signer or site])
    return Reply(node_id=NODES[site] if node is None else node,
                 num_examples=receipt.num_examples if weight is None else weight,
                 metrics={wire.SITE: claim or site, **signed.to_wire()})


def refusal(site: str, reason: str = "lifetime budget", *, weight: int = 0,
            node: int | None = None) -> Reply:
    return Reply(node_id=NODES[site] if node is None else node, num_examples=weight,
                 metrics={wire.SITE: site, wire.REFUSAL: reason})


def rejected(attribution: Attribution, replies: list[Reply], loaded: LoadedPolicy,
             rnd: int = 1) -> list[str]:
    judgement = judge_fit(replies, attribution, ctx(loaded, rnd))
    return [r.reason for r in judgement.rejections]


# -- the honest case: every defect test below differs from it in one thing ------------------


@pytest.mark.parametrize("mode", ["deployment", "demo"])
def test_honest_replies_are_accepted(site_keys: dict[str, Ed25519PrivateKey],
                                     loaded: LoadedPolicy, mode: str) -> None:
    attribution = deployment(site_keys) if mode == "deployment" else demo(site_keys)
    replies = [reply(site_keys, loaded, s) for s in SITES[:3]] + [refusal(SITES[3])]
    judgement = judge_fit(replies, attribution, ctx(loaded))
    assert judgement.rejections == []
    assert [t.site for t in judgement.trained] == list(SITES[:3])
    assert judgement.refusals == {SITES[3]: "lifetime budget"}
    for t in judgement.trained:
        assert t.key.fingerprint == fingerprint(site_keys[t.site].public_key())
        assert t.num_examples == t.signed.receipt.num_examples
    assert attribution.bound == {NODES[s]: s for s in SITES}


# -- identity -------------------------------------------------------------------------------


def test_deployment_a_node_enrolled_as_one_site_cannot_claim_another(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    # node of cleveland claims hungary, with a receipt hungary's key signed (stolen or replayed)
    liar = reply(site_keys, loaded, "hungary", node=NODES["cleveland"])
    (reason,) = rejected(deployment(site_keys), [liar], loaded)
    assert f"node {NODES['cleveland']} is enrolled as site 'cleveland'" in reason
    assert "claims 'hungary'" in reason


def test_deployment_an_unenrolled_node_is_rejected(site_keys: dict[str, Ed25519PrivateKey],
                                                   loaded: LoadedPolicy) -> None:
    stranger = reply(site_keys, loaded, "hungary", node=999)
    (reason,) = rejected(deployment(site_keys), [stranger], loaded)
    assert "node 999 is not enrolled for any site" in reason


def test_deployment_a_refusal_from_an_unenrolled_node_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    judgement = judge_fit([refusal("hungary", node=999)], deployment(site_keys), ctx(loaded))
    assert judgement.refusals == {} and len(judgement.rejections) == 1


def test_demo_a_node_cannot_switch_its_claimed_site(site_keys: dict[str, Ed25519PrivateKey],
                                                   loaded: LoadedPolicy) -> None:
    attribution = demo(site_keys)
    assert rejected(attribution, [reply(site_keys, loaded, "cleveland", node=1)], loaded) == []
    switched = reply(site_keys, loaded, "hungary", node=1, rnd=2)
    (reason,) = rejected(attribution, [switched], loaded, rnd=2)
    assert "node 1 is enrolled as site 'cleveland'" in reason and "'hungary'" in reason
    assert attribution.site_of(Reply(1, 0, {wire.SITE: "cleveland"})) == "cleveland"


def test_demo_a_second_node_cannot_claim_a_bound_site(site_keys: dict[str, Ed25519PrivateKey],
                                                      loaded: LoadedPolicy) -> None:
    first = reply(site_keys, loaded, "hungary", node=1)
    second = reply(site_keys, loaded, "hungary", node=2)
    attribution = demo(site_keys)
    (reason,) = rejected(attribution, [first, second], loaded)
    assert "node 2 claims site 'hungary', which another node already speaks for" in reason
    assert attribution.bound == {1: "hungary"}


@pytest.mark.parametrize("claim", ["mayo", "", "<script>"])
def test_demo_a_claim_of_a_non_member_is_rejected_and_binds_nothing(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy, claim: str
) -> None:
    attribution = demo(site_keys)
    bad = Reply(node_id=1, num_examples=0, metrics={wire.SITE: claim, wire.REFUSAL: "x"})
    with pytest.raises(RejectedReply, match="not a member site"):
        attribution.site_of(bad)
    assert attribution.bound == {}
    no_claim = Reply(node_id=1, num_examples=0, metrics={wire.REFUSAL: "x"})
    with pytest.raises(RejectedReply, match="claims None"):
        attribution.site_of(no_claim)


def test_deployment_an_enrolled_site_outside_the_run_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    attribution = Attribution(registry_of(site_keys, with_nodes=True), SITES[:3], demo=False)
    (reason,) = rejected(attribution, [reply(site_keys, loaded, SITES[3])], loaded)
    assert "is not a member of this run" in reason


# -- the receipt ----------------------------------------------------------------------------


def test_a_receipt_signed_by_another_sites_key_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    forged = reply(site_keys, loaded, "hungary", signer="cleveland")
    (reason,) = rejected(deployment(site_keys), [forged], loaded)
    assert "signature does not verify" in reason


def test_a_receipt_signed_by_an_unknown_key_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    keys = {**site_keys, "intruder": Ed25519PrivateKey.generate()}
    (reason,) = rejected(demo(site_keys), [reply(keys, loaded, "hungary", signer="intruder")],
                         loaded)
    assert "signature does not verify" in reason


@pytest.mark.parametrize(("field", "value"), [
    ("run_id", "another-run"), ("round", 2), ("policy_sha256", "cd" * 32),
    ("task_sha256", "ef" * 32), ("site", "cleveland"), ("num_examples", 7),
])
def test_a_receipt_about_something_else_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy, field: str, value: object
) -> None:
    honest = reply(site_keys, loaded, "hungary")
    receipt = make_receipt("hungary", 1, loaded.sha256, run_id=RUN)
    change: dict[str, Any] = {field: value}
    signed = replace(receipt, **change).sign(site_keys["hungary"])
    wrong = Reply(honest.node_id, honest.num_examples,
                  {wire.SITE: "hungary", **signed.to_wire()})
    (reason,) = rejected(deployment(site_keys), [wrong], loaded)
    assert "receipt names (site, run, round, policy, task, examples)" in reason
    assert repr(value) in reason


def test_a_weight_other_than_the_receipts_example_count_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    heavy = reply(site_keys, loaded, "hungary", weight=999)  # weighs more in the aggregate
    (reason,) = rejected(deployment(site_keys), [heavy], loaded)
    assert "examples" in reason and "999" in reason


def test_a_refusal_with_a_non_zero_weight_is_rejected(site_keys: dict[str, Ed25519PrivateKey],
                                                      loaded: LoadedPolicy) -> None:
    judgement = judge_fit([refusal("hungary", weight=5)], deployment(site_keys), ctx(loaded))
    assert judgement.refusals == {}
    (rej,) = judgement.rejections
    assert "refused with a non-zero weight (5)" in rej.reason
    assert (rej.node_id, rej.claimed_site) == (NODES["hungary"], "hungary")


@pytest.mark.parametrize("metrics", [
    {},
    {wire.RECEIPT: "{}", wire.RECEIPT_SIGNATURE: "00" * 64},
    {wire.RECEIPT: "not json", wire.RECEIPT_SIGNATURE: "zz"},
])
def test_a_training_reply_without_a_valid_receipt_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy, metrics: dict[str, str]
) -> None:
    bad = Reply(NODES["hungary"], 100, {wire.SITE: "hungary", **metrics})
    (reason,) = rejected(deployment(site_keys), [bad], loaded)
    assert reason.startswith("site hungary:")


def test_a_receipt_stating_an_invalid_mechanism_is_rejected(
    site_keys: dict[str, Ed25519PrivateKey], loaded: LoadedPolicy
) -> None:
    bad = reply(site_keys, loaded, "hungary", noise_multiplier=0.0)
    (reason,) = rejected(deployment(site_keys), [bad], loaded)
    assert "noise_multiplier must be finite and > 0" in reason


def test_a_site_without_an_active_key_is_rejected(site_keys: dict[str, Ed25519PrivateKey],
                                                  loaded: LoadedPolicy) -> None:
    registry = registry_of(site_keys, with_nodes=False)
    revoked = KeyRegistry([replace(k, ended_seq=50, ended_reason="revoked: x")
                           if k.site == "hungary" else k for k in registry.all()])
    (reason,) = rejected(Attribution(revoked, SITES, demo=True),
                         [reply(site_keys, loaded, "hungary")], loaded)
    assert "site hungary has no enrolled receipt key" in reason


def test_one_bad_reply_does_not_hide_the_good_ones(site_keys: dict[str, Ed25519PrivateKey],
                                                   loaded: LoadedPolicy) -> None:
    replies = [reply(site_keys, loaded, "cleveland"),
               reply(site_keys, loaded, "hungary", signer="cleveland"),
               reply(site_keys, loaded, "long_beach")]
    judgement = judge_fit(replies, deployment(site_keys), ctx(loaded))
    assert [t.site for t in judgement.trained] == ["cleveland", "long_beach"]
    assert [r.claimed_site for r in judgement.rejections] == ["hungary"]
