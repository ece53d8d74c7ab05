"""Every touch of Flower's internals on the site's side, in one place, for Flower 1.42.0.

- :func:`install_masking`: Flower's SecAgg+ client mod derives masks with a weak generator
  (``pseudo_rand_gen``: Mersenne Twister from a 32-bit fold of the shared secret); replace it
  with :func:`site_node.protocol.masking.chacha20_masks`.
- :func:`run_superexec_with`: the warm launcher hands Flower's SuperExec its own executor
  (Flower picks one from a fixed list) and runs ClientApp tasks with Flower's
  ``run_clientapp``.

Each function checks the installed version first and raises :class:`FlowerVersionError` with a
clear message on any other version: these patches reach into modules Flower may change.
"""

from __future__ import annotations

import importlib
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
