"""Which process runs a run: ``host:pid``, so a live run can be told from a killed one.

A run records its owner when it starts or resumes. A run whose status is still ``running`` but
whose owner on this host is gone was killed (SIGKILL, a crash, a power cut): it is shown as such
and can be resumed (``consortium run --resume``). On another host the owner cannot be checked.
"""

from __future__ import annotations

import os
import socket

import psutil


def this_process() -> str:
    """The owner string of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this host that no longer runs.

    False for an owner on another host (it cannot be checked) or an unreadable one.
    """
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
