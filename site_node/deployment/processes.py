"""Starting and stopping long-running Flower processes (SuperLink, SuperNodes, launchers).

Flower detaches some of its helpers (``flower-superexec``, app processes) into sessions of
their own, so stopping a process group is not enough: :func:`stop` also signals every
descendant ``psutil`` finds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower's tools: this interpreter's ``bin`` first on PATH.

    Flower starts helpers by name (``flower-superexec``, ``flwr-clientapp``), so they must be
    found next to the running interpreter even when the virtualenv is not activated.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def tool(name: str) -> str:
    """Path of a console script installed beside this interpreter (falls back to the name)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def spawn(args: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session (its own process group), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else tool_env(), start_new_session=True,
        )
    log.info("started pid %d: %s", proc.pid, " ".join(args[:2]))
    return proc


def descendants(pid: int) -> list[psutil.Process]:
    """All live descendants of ``pid``."""
    with contextlib.suppress(psutil.Error):
        return list(psutil.Process(pid).children(recursive=True))
    return []


def _signal(procs: Sequence[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Stop ``proc``, its process group and every descendant: SIGTERM, then SIGKILL."""
    tree = [*descendants(proc.pid)]
    with contextlib.suppress(psutil.Error):
        tree.append(psutil.Process(proc.pid))
    _signal(tree, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    _signal([*alive, *descendants(proc.pid)], signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_foreground(proc: subprocess.Popen[bytes]) -> int:
    """Wait for ``proc``; on Ctrl-C or SIGTERM stop it and its helpers, and return 130."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def alive(pid: object) -> bool:
    """Whether a process with this id runs (and is not a zombie)."""
    try:
        return psutil.Process(int(str(pid))).status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until ``host:port`` accepts connections; False if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_open(host, port, 0.5):
            return True
        time.sleep(0.2)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
