"""The server's view of the grid: Flower's public Grid API, paced and stoppable.

Flower's ``send_and_receive`` pulls replies at a fixed interval (3 s for a deployed SuperLink,
0.1 s in simulation) and cannot be interrupted before its timeout. :class:`PacedGrid` wraps any
grid and implements ``send_and_receive`` with the public ``push_messages``/``pull_messages``:
it pulls after a short interval that grows with the time the exchange has been waiting (a
fifth of it, so a reply is read at most about 20 % late, a fast round is not padded by polling
and a long one does not spin), and it raises :class:`RunInterrupted` within
one interval once the run's stop event is set (Ctrl-C or SIGTERM at the coordinator).

A node whose reply did not come before an exchange's timeout may still be working on that
message. Flower keeps one state per node (the SecAgg+ stage among it) and saves it when a
message is done, so a late, stale message finishing after the next round's first message
overwrites that round's state, and the node fails the next round too ("expect unmask stage, but
receive share_keys stage"). So the grid remembers such messages, and holds a new message for
their node until the stale reply has come (it is then dropped), within the new exchange's own
timeout: a node that never answers again is left out, as before, and no exchange waits longer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from consortium import flower_compat
from consortium.errors import RunInterrupted

log = logging.getLogger(__name__)

#: A SecAgg+ round is five exchanges, four of them small (keys, shares): replies come within a
#: few tens of milliseconds in simulation, so the first pulls come soon.
FIRST_INTERVAL_S = 0.005
#: Deployed, a pull is a request the SuperLink serves (its CPU is the machine's), and replies
#: take a few hundred milliseconds at least: the first pull comes a little later.
DEPLOYED_FIRST_INTERVAL_S = 0.02
#: The interval as a fraction of the time the exchange has waited since it pushed or last got
#: a reply, so a reply is read at most about that fraction late (with a fixed growth per empty
#: pull, from a reset at each reply, the last reply of a deployed exchange waited up to the
#: longest interval).
BACKOFF = 0.2
MAX_INTERVAL_S = 0.25


def pull_interval(waited_s: float, first_s: float = FIRST_INTERVAL_S) -> float:
    """The wait before the next pull, ``waited_s`` after the push or the last reply."""
    return min(max(first_s, BACKOFF * waited_s), MAX_INTERVAL_S)


class PacedGrid(Grid):
    """A grid whose ``send_and_receive`` is paced and stoppable (everything else delegates).

    Parameters
    ----------
    grid : Grid
        The grid Flower handed to the ServerApp.
    stop : threading.Event, optional
        Set it to stop the run: the current exchange raises :class:`RunInterrupted`.
    """

    def __init__(self, grid: Grid, stop: threading.Event | None = None) -> None:
        self.inner = grid
        self.stop = stop or threading.Event()
        #: Messages whose reply did not come in their exchange, by id: the node they went to.
        self.stale: dict[str, int] = {}
        deployed = flower_compat.engine_of(grid) == "deployment"
        self.first_interval = DEPLOYED_FIRST_INTERVAL_S if deployed else FIRST_INTERVAL_S

    def set_run(self, run: Any) -> None:
        """Delegate to the wrapped grid."""
        self.inner.set_run(run)

    @property
    def run(self) -> Any:
        """The run of the wrapped grid."""
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        """Delegate to the wrapped grid."""
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate to the wrapped grid."""
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[Any]:
        """Delegate to the wrapped grid."""
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate to the wrapped grid."""
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate to the wrapped grid."""
        return self.inner.pull_messages(message_ids)

    def check_stop(self) -> None:
        """Raise :class:`RunInterrupted` if the run's stop event is set."""
        if self.stop.is_set():
            raise RunInterrupted("the coordinator stopped the run")

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages`` and pull their replies until all arrived, ``timeout`` passed or the
        run is stopped (raises :class:`RunInterrupted`). A message for a node still working on
        a stale message is pushed once that node's stale reply has come."""
        self.check_stop()
        held: list[Message] = list(messages)
        pending: dict[str, int] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        since, replies = time.monotonic(), []
        while True:
            held = self._push_ready(held, pending)
            if not pending and not held:
                break
            got = list(self.pull_messages(set(pending) | set(self.stale)))
            replies += self._sort_replies(got, pending)
            if not pending and not held:
                break
            self.check_stop()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            if got:
                since = time.monotonic()
            interval = pull_interval(time.monotonic() - since, self.first_interval)
            time.sleep(interval if left is None else min(interval, left))
        self.stale.update(pending)
        self.check_stop()
        return replies

    def _push_ready(self, held: list[Message], pending: dict[str, int]) -> list[Message]:
        """Push the held messages whose node has no stale message; the ones still held."""
        busy = set(self.stale.values())
        ready = [m for m in held if m.metadata.dst_node_id not in busy]
        if ready:
            ids = list(self.push_messages(ready))
            pending.update(zip(ids, (m.metadata.dst_node_id for m in ready), strict=True))
        return [m for m in held if m.metadata.dst_node_id in busy]

    def _sort_replies(self, got: list[Message], pending: dict[str, int]) -> list[Message]:
        """The replies to ``pending`` (removed from it); stale replies are dropped."""
        fresh = []
        for reply in got:
            answered = reply.metadata.reply_to_message_id
            if pending.pop(answered, None) is not None:
                fresh.append(reply)
            elif self.stale.pop(answered, None) is not None:
                log.info("a late reply from node %s to an earlier exchange was dropped",
                         reply.metadata.src_node_id)
        return fresh
