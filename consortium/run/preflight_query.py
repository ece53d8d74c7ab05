"""The preflight's exchange: a Flower ``query`` message to every connected node, and the answers.

What the answers mean and when the run stops is :mod:`consortium.run.preflight` (no Flower
there, so the audit trail and the dashboard can import it). The query carries the instruction
of the round the run would start with; a reply carries only the site's name, the SecAgg+ mask
version it masks with, admit or refuse, the reason in clear and whether the refusal is final
(:mod:`site_node.preflight`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from flwr.app import ConfigRecord, ConfigRecordValues, Message, MessageType, RecordDict

from consortium.run.attribution import Attribution, RejectedReply, Rejection, Reply
from consortium.run.grid import PacedGrid
from consortium.run.preflight import Answer
from site_node.protocol import masking, wire

log = logging.getLogger(__name__)

NODE_WAIT_INTERVAL_S = 0.5
GROUP = "preflight"
Scalar = bool | bytes | float | int | str


def _answer(reply: Reply, attribution: Attribution) -> Answer:
    """The answer in ``reply``; raises :class:`RejectedReply`."""
    site = attribution.site_of(reply)
    metrics = reply.metrics
    admits, reason = metrics.get(wire.ADMITS), metrics.get(wire.REFUSAL)
    if not isinstance(admits, bool) or not (admits or isinstance(reason, str)):
        raise RejectedReply(f"site {site}: malformed preflight answer ({wire.ADMITS}={admits!r}, "
                            f"{wire.REFUSAL}={reason!r})")
    return Answer(site=site, admits=admits, reason=None if admits else str(reason),
                  final=metrics.get(wire.REFUSAL_FINAL) is True,
                  mask_version=masking.stated_version(metrics.get(wire.MASK_VERSION)))


def _node_ids(grid: PacedGrid, *, wanted: int, everyone: int, timeout: float | None) -> list[int]:
    """The connected nodes: once all ``everyone`` members are, or once at least ``wanted`` are
    and no node joined over one wait interval (nodes still registering are not left out of the
    query), or once ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    previous: list[int] | None = None
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if (len(nodes) >= everyone or (len(nodes) >= wanted and nodes == previous)
                or (deadline is not None and time.monotonic() >= deadline)):
            return nodes
        previous = nodes
        grid.check_stop()
        time.sleep(NODE_WAIT_INTERVAL_S)


def ask(grid: PacedGrid, *, instruction: Mapping[str, Scalar], attribution: Attribution,
        min_sites: int, members: int,
        timeout: float | None) -> tuple[list[Answer], list[Rejection]]:
    """Send the preflight query to every connected node; their answers and rejected replies."""
    values: dict[str, ConfigRecordValues] = {**instruction}
    config = ConfigRecord(values)
    messages = [Message(RecordDict({wire.PREFLIGHT_RECORD: config}), dst_node_id=node,
                        message_type=MessageType.QUERY, group_id=GROUP)
                for node in _node_ids(grid, wanted=min_sites, everyone=members,
                                      timeout=timeout)]
    answers, rejections = [], []
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            log.warning("node %s could not answer the preflight: %s", node, reply.error.reason)
            continue
        record = reply.content.config_records.get(wire.PREFLIGHT_RECORD) or ConfigRecord()
        got = Reply(node, 0, dict(record))
        try:
            answers.append(_answer(got, attribution))
        except RejectedReply as exc:
            rejections.append(Rejection(node, got.claimed_site, str(exc)))
    return answers, rejections
