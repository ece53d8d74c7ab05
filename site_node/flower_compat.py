"""Every touch of Flower's internals on the site's side, in one place, for Flower 1.42.0.

- :func:`install_masking`: Flower's SecAgg+ client mod derives masks with a weak generator
  (``pseudo_rand_gen``: Mersenne Twister from a 32-bit fold of the shared secret); replace it
  with :func:`site_node.protocol.masking.chacha20_masks`.
- :func:`run_superexec_with`: the warm launcher hands Flower's SuperExec its own executor
  (Flower picks one from a fixed list) and runs ClientApp tasks with Flower's
  ``run_clientapp``.
- :func:`pace_supernode`: Flower's SuperNode loop sleeps a fixed 3 s whenever the SuperLink
  had no message for it and polls its own reply queue every 0.5 s; a SecAgg+ round is five
  exchanges, so about 15 s of a deployed round was waiting. The loop's sleeps are shortened
  (:data:`IDLE_POLL_S`, :data:`WAIT_POLL_S`); nothing else of the protocol changes.

Each function checks the installed version first and raises :class:`FlowerVersionError` with a
clear message on any other version: these patches reach into modules Flower may change.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from site_node.errors import FlowerVersionError
from site_node.protocol.masking import chacha20_masks

#: The Flower release these patches were written for and tested against.
FLWR_VERSION = "1.42.0"
CLIENT_MASK_MODULE = "flwr.client.mod.secure_aggregation.secaggplus_mod"


def installed_version() -> str:
    """The installed Flower version."""
    from importlib.metadata import version

    return version("flwr")


def check_version() -> None:
    """Raise :class:`FlowerVersionError` unless Flower :data:`FLWR_VERSION` is installed."""
    found = installed_version()
    if found != FLWR_VERSION:
        raise FlowerVersionError(
            f"the site node patches Flower internals written for flwr {FLWR_VERSION}, but flwr "
            f"{found} is installed; install flwr=={FLWR_VERSION} or review "
            "site_node/flower_compat.py"
        )


def install_masking() -> None:
    """Make Flower's SecAgg+ client mod use :func:`chacha20_masks` (idempotent)."""
    check_version()
    module = importlib.import_module(CLIENT_MASK_MODULE)
    if not hasattr(module, "pseudo_rand_gen"):
        raise FlowerVersionError(f"{CLIENT_MASK_MODULE} has no pseudo_rand_gen: review masking")
    module.pseudo_rand_gen = chacha20_masks  # type: ignore[attr-defined]


def masking_installed() -> bool:
    """Whether the client mod uses :func:`chacha20_masks`."""
    module = importlib.import_module(CLIENT_MASK_MODULE)
    return getattr(module, "pseudo_rand_gen", None) is chacha20_masks


#: How long the SuperNode waits before asking the SuperLink again when it had no message.
IDLE_POLL_S = 0.1
#: How long it waits between looks at its own reply queue (local, cheap).
WAIT_POLL_S = 0.02
SUPERNODE_LOOP_MODULE = "flwr.supernode.start_client_internal"


class _PacedClock:
    """Stands in for the ``time`` module inside Flower's SuperNode loop, with shorter sleeps."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(IDLE_POLL_S if seconds >= 3 else min(seconds, WAIT_POLL_S))


def pace_supernode() -> None:
    """Shorten the fixed sleeps of Flower's SuperNode loop (call before starting it)."""
    check_version()
    module = importlib.import_module(SUPERNODE_LOOP_MODULE)
    if getattr(module, "time", None) is not time and not isinstance(module.time, _PacedClock):
        raise FlowerVersionError(f"{SUPERNODE_LOOP_MODULE} no longer sleeps through `time`")
    module.time = _PacedClock()  # type: ignore[attr-defined]


def run_supernode() -> None:
    """Flower's ``flower-supernode`` entry point, with a paced loop."""
    from flwr.supernode.cli import flower_supernode

    pace_supernode()
    flower_supernode()


def launch_result_accepted() -> Any:
    """Flower's value for "task launched" (``LaunchResult.accepted()``)."""
    from flwr.supercore.superexec.executor.types import LaunchResult

    return LaunchResult.accepted()


def run_clientapp_task(spec: Any) -> None:
    """Run one ClientApp task with Flower's own ``run_clientapp`` (in a forked child)."""
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    run_clientapp(
        runtime_api_address=spec.runtime_api_address, token=spec.token,
        insecure=spec.insecure, certificates=None, parent_pid=spec.parent_pid,
        runtime_dependency_install=False,
    )


def run_superexec_with(executor: Any, runtime_api_address: str, parent_pid: int | None) -> None:
    """Run Flower's SuperExec loop with ``executor`` instead of its subprocess executor."""
    check_version()
    from flwr.supercore.superexec import run_superexec as superexec

    if not hasattr(superexec, "get_executor"):
        raise FlowerVersionError("flwr.supercore.superexec.run_superexec has no get_executor")
    superexec.get_executor = lambda *args, **kwargs: executor
    superexec.run_superexec(
        runtime_api_address=runtime_api_address,
        insecure=True,  # the SuperNode's runtime API listens on loopback only
        plugin_config=None, parent_pid=parent_pid, runtime_dependency_install=False,
    )
