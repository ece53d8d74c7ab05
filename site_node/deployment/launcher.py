"""A warm ClientApp launcher for the site's SuperNode (Flower's ``--isolation process`` mode).

By default a SuperNode has Flower's SuperExec start a fresh ``flwr-clientapp`` process for every
message, and each one spends seconds importing torch and Opacus before it does any work (SecAgg+
sends four messages per round, evaluation one more). This launcher is a SuperExec whose executor
forks, per message, from a parent that has already imported those libraries: each ClientApp
still runs in a process of its own (a crash or a leak stays confined to one message, node state
still travels through Flower's context) but starts in milliseconds.

Only third-party libraries stay imported in a child; the project's own modules are loaded by
Flower from the app bundle (FAB) in the child, as with the default launcher, so the code a node
runs is always the code of the submitted run. The parent imports every third-party module a
ClientApp uses (:data:`PRELOAD`), torch's compiler stack included (torch imports it, about 3 s,
when the first optimizer is made). It never runs torch itself: when it ran one DP-SGD step
before forking, no child ever answered (every SecAgg+ stage timed out; torch's thread pools do
not survive a fork). The touches of Flower internals (handing SuperExec this executor, shorter
waits for objects, reusing an installed app bundle) are in :mod:`site_node.flower_compat`.

Run by :mod:`site_node.supernode` next to ``flower-supernode --isolation process``::

    python -m site_node.deployment.launcher --runtime-api-address 127.0.0.1:9094 --parent-pid PID
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from site_node import flower_compat

log = logging.getLogger(__name__)

#: Third-party modules a ClientApp imports, loaded once in the parent.
PRELOAD = (
    "numpy", "torch", "torch.optim", "torch._dynamo", "opacus", "opacus.accountants",
    "opacus.data_loader", "cryptography", "pandas", "pyarrow", "pyarrow.parquet", "pydantic",
    "yaml", "PIL.Image", "tomllib", "tomli_w", "sqlite3", "flwr.client", "flwr.client.mod",
    "flwr.clientapp.utils", "flwr.cli.install", flower_compat.CLIENTAPP_MODULE,
)
#: The project's own top-level packages: a child forgets them (they come from the app bundle).
PROJECT_PACKAGES = ("site_node", "policies", "consortium", "dashboard")
#: Under ``$FLWR_HOME``: the bytecode of modules the children import (:func:`cache_bytecode`).
BYTECODE_DIR = "bytecode"


#: SuperExec's own wait between asks for a task (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``, its
#: smallest accepted value); :meth:`ForkExecutor.reconcile` waits longer the longer the node has
#: been idle (:func:`idle_wait`).
TASK_POLL_S = 0.01
#: The wait before the next ask for a task right after one started or ended.
FIRST_WAIT_S = 0.02
#: The wait as a fraction of the time since a task last started or ended: a task that comes
#: after the launcher waited ``t`` starts at most about ``IDLE_BACKOFF * t`` late.
IDLE_BACKOFF = 0.2
#: The longest wait (every ask is a request the SuperNode answers).
MAX_WAIT_S = 1.0


def idle_wait(idle_s: float) -> float:
    """The wait before asking for a task again, ``idle_s`` seconds after the last activity."""
    return min(max(FIRST_WAIT_S, IDLE_BACKOFF * idle_s), MAX_WAIT_S)


class ForkExecutor:
    """A Flower SuperExec executor that forks a pre-imported process per task.

    SuperExec asks the SuperNode for a task in a loop that calls :meth:`reconcile` first; the
    executor paces that loop itself (SuperExec's own wait is :data:`TASK_POLL_S`): soon after
    a task started or ended (the next SecAgg+ stage follows within seconds), rarely when idle.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children: set[int] = set()
        self.sleep, self.clock = sleep, clock
        self.active = clock()

    def get_eligible_capacity(
        self, supported_task_types: set[Any], **_: Any
    ) -> tuple[set[Any], set[str]]:
        """Every supported task type can start at once."""
        return supported_task_types, set()

    def wait_for_capacity(self, *_: Any, **__: Any) -> None:
        """No capacity gate."""

    def launch(self, spec: Any) -> Any:
        """Fork a child that runs the ClientApp for ``spec.token``."""
        pid = os.fork()
        if pid == 0:  # child: never returns
            _run_child(spec)
        self.children.add(pid)
        self.active = self.clock()
        return flower_compat.launch_result_accepted()

    def reconcile(self) -> None:
        """Reap finished children, then wait before SuperExec asks for the next task."""
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
            self.children.discard(pid)
            self.active = self.clock()
        wait = idle_wait(self.clock() - self.active) - TASK_POLL_S
        if wait > 0:
            self.sleep(wait)

    def close(self) -> None:
        """Stop children still running."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _run_child(spec: Any) -> None:
    code = 1
    try:
        # The launcher imported this package to patch Flower; the task must import the
        # submitted run's own code (its app bundle), so forget ours first.
        forget_project_modules()
        cache_bytecode()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        flower_compat.run_clientapp_task(spec)
        code = 0
    except SystemExit as exc:  # flwr_exit() ends every task with sys.exit
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # must never return into the parent's loop
        log.exception("ClientApp task failed")
    finally:
        os._exit(code)


def forget_project_modules() -> None:
    """Remove the project's own modules from ``sys.modules`` (third-party ones stay)."""
    for name in [m for m in sys.modules if m.split(".", 1)[0] in PROJECT_PACKAGES]:
        del sys.modules[name]


def preload() -> None:
    """Import the third-party libraries a ClientApp uses once, before any fork."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def cache_bytecode() -> None:
    """Keep the compiled bytecode of the modules a child imports (the app bundle's, afresh in
    every child) under ``$FLWR_HOME`` (:data:`BYTECODE_DIR`): compiling them from source cost
    about 0.1-0.2 s of CPU a message where bytecode is not written
    (``PYTHONDONTWRITEBYTECODE``). The installed bundle's folder stays as Flower installed it."""
    flwr_home = os.environ.get("FLWR_HOME")
    if flwr_home:
        sys.pycache_prefix = str(Path(flwr_home) / BYTECODE_DIR)
        sys.dont_write_bytecode = False


def serve(runtime_api_address: str, parent_pid: int | None) -> None:
    """Run Flower's SuperExec loop with :class:`ForkExecutor` (blocks until stopped), with
    Flower's object pulls paced and installed app bundles reused in every child."""
    preload()
    flower_compat.pace_object_pulls()
    flower_compat.reuse_installed_fab()
    flower_compat.run_superexec_with(ForkExecutor(), runtime_api_address, parent_pid)


def main() -> None:
    """Entry point: ``python -m site_node.deployment.launcher``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    serve(args.runtime_api_address, args.parent_pid)


if __name__ == "__main__":
    main()
