"""Whose reply is this? Every reply is attributed to the site enrolled for the node that sent it.

In deployment a site's enrolment names its node id (the SuperLink admits the node by its
enrolled key, so the node id is authenticated); the site a reply *claims* must be that site. In
the local demonstration the simulated nodes have no enrolled node ids: a node is bound to the
first member site it claims, and from then on the same rules apply (no node may change its
site, no site may be claimed by two nodes). A reply that breaks them is rejected.

:func:`judge_fit` then checks each attributed training reply: a refusal (weight 0, reason in
clear), or a receipt that must be well-formed, signed by the site's enrolled key, and about this
run, round, policy, task and example count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consortium.audit.registry import EnrolledKey, KeyRegistry
from site_node.protocol import wire
from site_node.protocol.errors import ReceiptError
from site_node.protocol.receipt import SignedReceipt


@dataclass(frozen=True)
class Reply:
    """One node's reply to a round's instruction, as the server received it."""

    node_id: int
    num_examples: int
    metrics: Mapping[str, object]

    @property
    def claimed_site(self) -> str | None:
        """The site the reply claims to come from."""
        site = self.metrics.get(wire.SITE)
        return site if isinstance(site, str) else None


@dataclass(frozen=True)
class Rejection:
    """A reply that was not accepted, and why (it becomes a security event)."""

    node_id: int
    claimed_site: str | None
    reason: str


@dataclass(frozen=True)
class Trained:
    """A site's accepted training reply: its verified receipt and the key that signed it."""

    site: str
    signed: SignedReceipt
    key: EnrolledKey
    num_examples: int


@dataclass
class FitJudgement:
    """What the server made of one round's training replies.

    ``resent`` holds receipts of this round that sites trained before an interruption of the
    run and send again (with weight 0) instead of training twice: their spending is recorded,
    their update is not in this round's sum. ``final`` names the refusing sites whose refusal
    is final for the run (an admission refusal: they refuse every later round of it).
    """

    trained: list[Trained] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)
    final: set[str] = field(default_factory=set)
    rejections: list[Rejection] = field(default_factory=list)
    resent: list[Trained] = field(default_factory=list)


class RejectedReply(Exception):
    """A reply that cannot be attributed or accepted; the message says why."""


class Attribution:
    """Binds node ids to member sites for one run.

    Parameters
    ----------
    registry : KeyRegistry
        The enrolled site keys (node ids in deployment).
    members : tuple of str
        The run's member sites.
    demo : bool
        Bind nodes on first claim (the local demonstration has no enrolled node ids).
    """

    def __init__(self, registry: KeyRegistry, members: tuple[str, ...], *, demo: bool) -> None:
        self.registry = registry
        self.members = members
        self.demo = demo
        self.bound: dict[int, str] = {}

    def site_of(self, reply: Reply, *, bind: bool = True) -> str:
        """The site a reply comes from; raises :class:`RejectedReply`.

        With ``bind`` (the default) a demonstration node is bound to the site at once; the
        training judgement binds only after the reply was accepted (:meth:`bind`), so a reply
        that is then rejected cannot claim a site for its node.
        """
        claimed = reply.claimed_site
        node = reply.node_id
        site = self.bound.get(node)
        if site is None and not self.demo:
            site = self.registry.site_of_node(node)
            if site is None:
                raise RejectedReply(f"node {node} is not enrolled for any site (claims "
                                    f"{claimed!r})")
        if site is None:
            if claimed not in self.members:
                raise RejectedReply(f"node {node} claims {claimed!r}, not a member site")
            if claimed in self.bound.values():
                raise RejectedReply(f"node {node} claims site {claimed!r}, which another node "
                                    "already speaks for")
            site = claimed
        if claimed != site:
            raise RejectedReply(f"node {node} is enrolled as site {site!r} but its reply claims "
                                f"{claimed!r}")
        if site not in self.members:
            raise RejectedReply(f"site {site!r} (node {node}) is not a member of this run")
        if bind:
            self.bind(node, site)
        return site

    def bind(self, node: int, site: str) -> None:
        """Bind ``node`` to ``site`` for the rest of the run."""
        self.bound[node] = site


@dataclass(frozen=True)
class RoundContext:
    """What every receipt of a round must name."""

    run_id: str
    round: int
    policy_sha256: str
    task_sha256: str


def _receipt(reply: Reply, site: str, ctx: RoundContext, registry: KeyRegistry, *,
             resent: bool = False) -> Trained:
    try:
        signed = SignedReceipt.from_wire(reply.metrics)
    except ReceiptError as exc:
        raise RejectedReply(f"site {site}: {exc}") from None
    r = signed.receipt
    weight = r.num_examples if resent else reply.num_examples
    expected = (site, ctx.run_id, ctx.round, ctx.policy_sha256, ctx.task_sha256, weight)
    got = (r.site, r.run_id, r.round, r.policy_sha256, r.task_sha256, r.num_examples)
    if got != expected:
        raise RejectedReply(f"site {site}: receipt names (site, run, round, policy, task, "
                            f"examples) {got}, expected {expected}")
    key = registry.active(site)
    if key is None:
        raise RejectedReply(f"site {site} has no enrolled receipt key")
    try:
        signed.verify(key.key)
        r.mechanism  # noqa: B018 - raises ValueError for an invalid mechanism
    except (ReceiptError, ValueError) as exc:
        raise RejectedReply(f"site {site}: {exc}") from None
    return Trained(site=site, signed=signed, key=key, num_examples=reply.num_examples)


def judge_fit(replies: list[Reply], attribution: Attribution, ctx: RoundContext
              ) -> FitJudgement:
    """Attribute and check every training reply of a round."""
    out = FitJudgement()
    for reply in replies:
        try:
            site = attribution.site_of(reply, bind=False)
            refusal = reply.metrics.get(wire.REFUSAL)
            if refusal is not None:
                if reply.num_examples != 0:
                    raise RejectedReply(f"site {site} refused with a non-zero weight "
                                        f"({reply.num_examples})")
                if wire.RECEIPT in reply.metrics:
                    out.resent.append(_receipt(reply, site, ctx, attribution.registry,
                                               resent=True))
                out.refusals[site] = str(refusal)
                if reply.metrics.get(wire.REFUSAL_FINAL) is True:
                    out.final.add(site)
            else:
                out.trained.append(_receipt(reply, site, ctx, attribution.registry))
            attribution.bind(reply.node_id, site)
        except RejectedReply as exc:
            out.rejections.append(Rejection(reply.node_id, reply.claimed_site, str(exc)))
    return out
