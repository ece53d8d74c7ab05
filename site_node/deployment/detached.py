"""A site's detached node: the processes ``site-node start --detach`` left running, and stopping
them (``site-node stop``).

``status.json`` records the SuperNode and its ClientApp launcher as
:class:`~site_node.deployment.stopping.ProcessRecord` fields. The SuperNode's mark is its
``--node-config`` entry naming this home's state directory, the launcher's the SuperNode's pid it
watches (``--parent-pid``); a record whose process is gone or whose id now belongs to
another program is reported and never signalled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil

from site_node.deployment import stopping
from site_node.home import SiteHome
from site_node.settings import NODE_STATE_DIR

log = logging.getLogger(__name__)

#: status.json keys of the two recorded processes (``pid`` is the SuperNode's, as before).
NODE_PID, NODE_CREATED = "pid", "pid_created"
LAUNCHER_PID, LAUNCHER_CREATED = "launcher_pid", "launcher_created"
STATE_STOPPED = "stopped"


@dataclass(frozen=True)
class StopReport:
    """What ``site-node stop`` did: the processes stopped, and records it did not act on."""

    stopped: stopping.Stopped | None
    stale: tuple[str, ...]

    @property
    def nothing_running(self) -> bool:
        """True if no recorded process of this node was running."""
        return self.stopped is None


def node_mark(home: SiteHome) -> str:
    """The text a SuperNode of ``home`` has on its command line."""
    return f"{NODE_STATE_DIR}='{home.state_dir}'"


def launcher_mark(node_pid: int) -> str:
    """The text the launcher serving SuperNode ``node_pid`` has on its command line."""
    return f"--parent-pid {node_pid}"


def node_fields(home: SiteHome, pid: int) -> dict[str, object]:
    """status.json fields recording the SuperNode ``pid`` (with its creation time)."""
    rec = stopping.record(pid, mark=node_mark(home))
    return {NODE_PID: rec.pid, NODE_CREATED: rec.created}


def launcher_fields(pid: int | None, *, node_pid: int) -> dict[str, object]:
    """status.json fields recording the launcher ``pid`` of SuperNode ``node_pid`` (None: no
    launcher)."""
    if pid is None:
        return {LAUNCHER_PID: None, LAUNCHER_CREATED: None}
    rec = stopping.record(pid, mark=launcher_mark(node_pid))
    return {LAUNCHER_PID: rec.pid, LAUNCHER_CREATED: rec.created}


def _records(home: SiteHome, info: dict[str, object]) -> list[tuple[str, stopping.ProcessRecord]]:
    found = []
    node = stopping.from_mapping({stopping.PID: info.get(NODE_PID),
                                  stopping.CREATED: info.get(NODE_CREATED),
                                  stopping.MARK: node_mark(home)})
    if node is not None:
        found.append(("SuperNode", node))
        launcher = stopping.from_mapping({stopping.PID: info.get(LAUNCHER_PID),
                                          stopping.CREATED: info.get(LAUNCHER_CREATED),
                                          stopping.MARK: launcher_mark(node.pid)})
        if launcher is not None:
            found.append(("ClientApp launcher", launcher))
    return found


def node_running(home: SiteHome) -> bool:
    """Whether the SuperNode ``status.json`` records still runs (and is still that process)."""
    found = _records(home, home.read_status())
    return bool(found) and stopping.why_not(found[0][1]) is None


def stop_node(home: SiteHome, *, grace_s: float = 10.0) -> StopReport:
    """Stop the node ``status.json`` records for ``home`` and every helper it started.

    Only processes that are still the recorded ones are signalled (see
    :func:`site_node.deployment.stopping.why_not`); the others are reported in ``stale``.
    """
    roots: list[psutil.Process] = []
    names: dict[int, str] = {}
    stale: list[str] = []
    for label, rec in _records(home, home.read_status()):
        reason = stopping.why_not(rec)
        proc = stopping.find(rec) if reason is None else None
        if proc is None:
            stale.append(f"{label}: {reason or f'pid {rec.pid} has exited'}")
            continue
        roots.append(proc)
        names[proc.pid] = label
    if not roots:
        return StopReport(stopped=None, stale=tuple(stale))
    stopped = stopping.stop_tree(roots, names=names, grace_s=grace_s)
    home.write_status(state=STATE_STOPPED, reason="stopped by `site-node stop`")
    log.info("stopped the node of %s: %s", home.root, stopped.describe())
    return StopReport(stopped=stopped, stale=tuple(stale))
