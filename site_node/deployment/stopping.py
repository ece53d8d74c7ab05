"""Stopping a detached process that a file recorded (``status.json``, ``superlink.pid``).

A recorded process id is only a claim: the process may be gone, and its id may have been given
to another program since. :class:`ProcessRecord` keeps, with the id, the process's creation
time and a mark its command line must contain, between spaces (the site home's state directory,
the consortium home's SuperLink database); :func:`find` returns the process only when both
still match, so a stale record never gets a stranger signalled. :func:`stop_tree` stops the
found processes and every descendant (Flower detaches helpers into sessions of their own):
SIGTERM, a wait, then SIGKILL for whatever is left, and says what it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

#: Two creation times within this many seconds are the same process (psutil rounds them).
CREATE_TIME_TOLERANCE_S = 0.05
#: Wire keys of a record in a JSON file.
PID, CREATED, MARK = "pid", "created", "mark"


@dataclass(frozen=True)
class ProcessRecord:
    """A process as recorded when it was started: id, creation time, command-line mark."""

    pid: int
    created: float | None
    mark: str

    def as_dict(self) -> dict[str, object]:
        """The record for a JSON file."""
        return {PID: self.pid, CREATED: self.created, MARK: self.mark}


@dataclass(frozen=True)
class Stopped:
    """What :func:`stop_tree` stopped: ``terminated`` ended on SIGTERM, ``killed`` needed
    SIGKILL (each ``(pid, name)``)."""

    terminated: tuple[tuple[int, str], ...]
    killed: tuple[tuple[int, str], ...]

    def describe(self) -> str:
        """One line: every stopped process and how it ended."""
        parts = [f"{name} (pid {pid})" for pid, name in self.terminated]
        parts += [f"{name} (pid {pid}, killed after the timeout)" for pid, name in self.killed]
        return ", ".join(parts) if parts else "nothing"


def record(pid: int, *, mark: str) -> ProcessRecord:
    """Record the running process ``pid`` (its creation time is read now)."""
    created: float | None = None
    with contextlib.suppress(psutil.Error):
        created = psutil.Process(pid).create_time()
    return ProcessRecord(pid=pid, created=created, mark=mark)


def from_mapping(data: Mapping[str, object]) -> ProcessRecord | None:
    """A record read back from JSON; None if it holds no usable process id."""
    try:
        pid = int(str(data[PID]))
        created = data.get(CREATED)
        when = None if created is None else float(str(created))
        return ProcessRecord(pid=pid, created=when, mark=str(data.get(MARK) or ""))
    except (KeyError, ValueError):
        return None


def why_not(rec: ProcessRecord) -> str | None:
    """Why ``rec`` is not (any longer) the recorded process; None if it is."""
    try:
        proc = psutil.Process(rec.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return f"pid {rec.pid} has exited"
        created, cmdline = proc.create_time(), " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return f"pid {rec.pid} has exited"
    except psutil.Error as exc:
        return f"pid {rec.pid} cannot be inspected ({type(exc).__name__}); not signalled"
    if rec.created is not None and abs(created - rec.created) > CREATE_TIME_TOLERANCE_S:
        return f"pid {rec.pid} now belongs to another process (started later); not signalled"
    if not rec.mark or f" {rec.mark} " not in f" {cmdline} ":
        return (f"pid {rec.pid} now belongs to another program ({cmdline[:80]!r}); "
                "not signalled")
    return None


def find(rec: ProcessRecord) -> psutil.Process | None:
    """The recorded process if it still runs and is the one recorded, else None."""
    if why_not(rec) is not None:
        return None
    with contextlib.suppress(psutil.Error):
        return psutil.Process(rec.pid)
    return None


def _tree(roots: Sequence[psutil.Process]) -> list[psutil.Process]:
    seen: dict[int, psutil.Process] = {}
    for root in roots:
        seen.setdefault(root.pid, root)
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=True):
                seen.setdefault(child.pid, child)
    return list(seen.values())


def _name(proc: psutil.Process, names: Mapping[int, str]) -> str:
    if proc.pid in names:
        return names[proc.pid]
    with contextlib.suppress(psutil.Error):
        return proc.name()
    return "helper"


def stop_tree(roots: Sequence[psutil.Process], *, names: Mapping[int, str] | None = None,
              grace_s: float = 10.0) -> Stopped:
    """Stop ``roots`` and all their descendants: SIGTERM, wait ``grace_s``, then SIGKILL.

    ``names`` labels the roots in the report (``{pid: "SuperNode"}``); others get their
    process name.
    """
    labels = dict(names or {})
    tree = _tree(roots)
    named = {p.pid: _name(p, labels) for p in tree}
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    late = [p for p in _tree(roots) if p.pid not in named and p.is_running()]
    for proc in [*alive, *late]:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs([*alive, *late], timeout=grace_s)
    killed = {p.pid for p in alive}
    log.info("stopped %d processes (%d killed)", len(tree), len(killed))
    return Stopped(
        terminated=tuple((p.pid, named[p.pid]) for p in tree if p.pid not in killed),
        killed=tuple((p.pid, named[p.pid]) for p in alive),
    )
