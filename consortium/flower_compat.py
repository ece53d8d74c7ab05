"""Every touch of Flower's internals on the server's side, in one place, for Flower 1.42.0.

- :func:`install_masking`: Flower's SecAgg+ server workflow reconstructs masks with a weak
  generator (``pseudo_rand_gen``); replace it with the sites' ChaCha20 generator
  (:func:`site_node.protocol.masking.chacha20_masks`), or unmasking would fail.
- The legacy round machinery the consortium's workflow reuses (Flower's own SecAgg+ workflow
  runs inside it): the record names and keys of its context, the client-manager thread, the
  initial-parameters and evaluation workflows, and the record-to-parameters conversion.
- :func:`engine_of`: whether a grid is Flower's simulation engine or a deployed SuperLink.
- :func:`pace_simulation`: the simulation engine hands messages to its workers from a loop that
  waits a fixed 0.1 s between looks; a SecAgg+ round is five exchanges, so that wait is a large
  part of a small round. The loop's wait is shortened (:data:`VCE_POLL_S`); it is Flower's own
  loop, handed a stop event whose ``wait`` is shorter.
- :func:`pace_object_pulls`: a deployed ServerApp pulls the sites' replies, whose objects may
  arrive after the message, waiting 1 s before its first retry; the site side's patch
  (:func:`site_node.flower_compat.pace_object_pulls`) shortens that wait in this process too.

:func:`check_version` raises :class:`FlowerVersionError` on any Flower but
:data:`FLWR_VERSION`; :func:`install_masking` calls it first.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import Any

import numpy as np
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common.recorddict_compat import (
    arrayrecord_to_parameters,
    parameters_to_arrayrecord,
)
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import (
    default_evaluate_workflow,
    default_init_params_workflow,
)

from consortium.errors import FlowerVersionError
from site_node import flower_compat as site_flower_compat
from site_node.protocol.masking import chacha20_masks

#: The Flower release these patches were written for and tested against.
FLWR_VERSION = "1.42.0"
SERVER_MASK_MODULE = "flwr.server.workflow.secure_aggregation.secaggplus_workflow"

__all__ = [
    "MAIN_CONFIGS_RECORD", "MAIN_PARAMS_RECORD", "Key", "default_evaluate_workflow",
    "default_init_params_workflow", "start_update_client_manager_thread",
]


def check_version() -> None:
    """Raise :class:`FlowerVersionError` unless Flower :data:`FLWR_VERSION` is installed."""
    found = version("flwr")
    if found != FLWR_VERSION:
        raise FlowerVersionError(
            f"the consortium server patches Flower internals written for flwr {FLWR_VERSION}, "
            f"but flwr {found} is installed; install flwr=={FLWR_VERSION} or review "
            "consortium/flower_compat.py"
        )


def install_masking() -> None:
    """Make Flower's SecAgg+ server workflow use :func:`chacha20_masks` (idempotent)."""
    check_version()
    module = importlib.import_module(SERVER_MASK_MODULE)
    if not hasattr(module, "pseudo_rand_gen"):
        raise FlowerVersionError(f"{SERVER_MASK_MODULE} has no pseudo_rand_gen: review masking")
    module.pseudo_rand_gen = chacha20_masks  # type: ignore[attr-defined]


def masking_installed() -> bool:
    """Whether the server workflow uses :func:`chacha20_masks`."""
    module = importlib.import_module(SERVER_MASK_MODULE)
    return getattr(module, "pseudo_rand_gen", None) is chacha20_masks


def global_weights(context: Any) -> list[np.ndarray]:
    """The global model held in a legacy context's state, as NumPy arrays."""
    params = arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                       keep_input=True)
    return parameters_to_ndarrays(params)


def set_global_weights(context: Any, weights: list[np.ndarray]) -> None:
    """Make ``weights`` the global model of a legacy context (what the next round sends)."""
    context.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
        ndarrays_to_parameters(weights), keep_input=True)


#: Seconds the simulation engine waits between looks for new messages (Flower: 0.1).
VCE_POLL_S = 0.005
VCE_MODULE = "flwr.server.superlink.fleet.vce.vce_api"


class _ShortWaits:
    """Stands in for the engine's stop event inside its message loop: same event, shorter
    waits."""

    def __init__(self, event: Any) -> None:
        self._event = event

    def is_set(self) -> bool:
        return bool(self._event.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._event.wait(VCE_POLL_S if timeout is not None else None))


def pace_simulation() -> None:
    """Make the simulation engine look for new messages every :data:`VCE_POLL_S` (idempotent)."""
    check_version()
    module = importlib.import_module(VCE_MODULE)
    loop = getattr(module, "add_messages_to_queue", None)
    if loop is None:
        raise FlowerVersionError(f"{VCE_MODULE} has no add_messages_to_queue")
    if getattr(loop, "paced", False):
        return

    def paced(state: Any, queue: Any, nodes_mapping: Any, f_stop: Any) -> None:
        loop(state, queue, nodes_mapping, _ShortWaits(f_stop))

    paced.paced = True  # type: ignore[attr-defined]
    module.add_messages_to_queue = paced  # type: ignore[attr-defined]


def engine_of(grid: Any) -> str:
    """``"simulation"`` for Flower's in-memory simulation grid, else ``"deployment"``."""
    return "simulation" if type(grid).__name__ == "InMemoryGrid" else "deployment"


def pace_object_pulls() -> None:
    """Shorten the first retry wait of Flower's object pulls in this (the ServerApp's) process."""
    check_version()
    site_flower_compat.pace_object_pulls()
