"""Every touch of Flower's internals on the server's side, in one place, for Flower 1.42.0.

- :class:`SecAggPlus`: Flower's SecAgg+ workflow with the collect and unmask stages of mask
  version 2 (the sites' format, :mod:`site_node.protocol.masked_vector`): uploads summed in
  place, masks removed in one chunked pass. :func:`install_masking` also replaces the weak
  generator the workflow module would use (``pseudo_rand_gen``) with the sites' one.
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
import logging
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.crypto.shamir import combine_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.compat.common.recorddict_compat import (
    arrayrecord_to_parameters,
    parameters_to_arrayrecord,
    recorddict_to_fitres,
)
from flwr.server import LegacyContext
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import (
    default_evaluate_workflow,
    default_init_params_workflow,
)
from flwr.serverapp import Grid
from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

from consortium.errors import FlowerVersionError
from site_node import flower_compat as site_flower_compat
from site_node.protocol import masked_vector
from site_node.protocol.masking import masks

#: The Flower release these patches were written for and tested against.
FLWR_VERSION = "1.42.0"
SERVER_MASK_MODULE = "flwr.server.workflow.secure_aggregation.secaggplus_workflow"
log = logging.getLogger(__name__)

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
    """Make Flower's SecAgg+ server workflow module use :func:`masks` for any mask it still
    derives itself (idempotent; :class:`SecAggPlus` derives none)."""
    check_version()
    module = importlib.import_module(SERVER_MASK_MODULE)
    if not hasattr(module, "pseudo_rand_gen"):
        raise FlowerVersionError(f"{SERVER_MASK_MODULE} has no pseudo_rand_gen: review masking")
    module.pseudo_rand_gen = masks  # type: ignore[attr-defined]


def masking_installed() -> bool:
    """Whether the server workflow module uses :func:`masks`."""
    module = importlib.import_module(SERVER_MASK_MODULE)
    return getattr(module, "pseudo_rand_gen", None) is masks


def _quantisation(state: Any) -> masked_vector.Quantisation:
    return masked_vector.Quantisation(clipping_range=state.clipping_range,
                                      target_range=state.quantization_range,
                                      mod_range=state.mod_range)


def _stage_message(nid: int, content: RecordDict, config: dict[str, Any], rnd: Any) -> Message:
    content.config_records[RECORD_KEY_CONFIGS] = ConfigRecord(config)
    return Message(content=content, dst_node_id=nid, message_type=MessageType.TRAIN,
                   group_id=str(rnd))


class SecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow with mask version 2's collect and unmask stages: uploads are
    summed in place as they are read, and every mask is removed and the sum dequantised in
    one chunked pass (:mod:`site_node.protocol.masked_vector`). Messages, shares, thresholds
    and the strategy call are Flower's."""

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext,
                                     state: Any) -> bool:
        """Forward the key shares with each site's fit instruction; sum the masked uploads."""
        rnd = context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND]
        msgs = list(grid.send_and_receive([_stage_message(nid, state.nid_to_fitins[nid], {
            SecAggKey.STAGE: Stage.COLLECT_MASKED_VECTORS,
            SecAggKey.CIPHERTEXT_LIST: state.forward_ciphertexts[nid],
            SecAggKey.SOURCE_LIST: state.forward_srcs[nid]}, rnd)
            for nid in state.active_node_ids], timeout=self.timeout))
        del state.forward_ciphertexts, state.forward_srcs, state.nid_to_fitins
        total = masked_vector.MaskedSum(_quantisation(state))
        for msg in msgs:
            if msg.has_error():
                state.failures.append(Exception(msg.error))
                continue
            config = msg.content.config_records[RECORD_KEY_CONFIGS]
            total.add(cast(list[bytes], config.pop(SecAggKey.MASKED_PARAMETERS)))
            proxy = state.nid_to_proxies[msg.metadata.src_node_id]
            state.legacy_results.append((proxy, recorddict_to_fitres(msg.content, True)))
        state.active_node_ids = {m.metadata.src_node_id for m in msgs if not m.has_error()}
        state.aggregate_ndarrays = total.arrays
        return bool(self._check_threshold(state))

    def unmask_stage(self, grid: Grid, context: LegacyContext, state: Any) -> bool:
        """Collect the shares, reconstruct the secrets, unmask and hand the strategy the
        average (float32)."""
        rnd = cast(int, context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        active, dead = state.active_node_ids, state.sampled_node_ids - state.active_node_ids
        msgs = list(grid.send_and_receive([_stage_message(nid, RecordDict(), {
            SecAggKey.STAGE: Stage.UNMASK,
            SecAggKey.ACTIVE_NODE_ID_LIST: list(state.nid_to_neighbours[nid] & active),
            SecAggKey.DEAD_NODE_ID_LIST: list(state.nid_to_neighbours[nid] & dead)}, rnd)
            for nid in active], timeout=self.timeout))
        state.active_node_ids = {m.metadata.src_node_id for m in msgs if not m.has_error()}
        shares: dict[int, list[bytes]] = {nid: [] for nid in state.sampled_node_ids}
        for msg in msgs:
            if msg.has_error():
                state.failures.append(Exception(msg.error))
                continue
            config = msg.content.config_records[RECORD_KEY_CONFIGS]
            owners = cast(list[int], config[SecAggKey.NODE_ID_LIST])
            for owner, share in zip(owners, cast(list[bytes], config[SecAggKey.SHARE_LIST]),
                                    strict=True):
                shares[owner].append(share)
        if any(len(s) < state.threshold for s in shares.values()):
            log.error("not enough shares to recover the SecAgg+ secrets in the unmask stage")
            return False
        secrets = {nid: combine_shares(s) for nid, s in shares.items()}
        pairwise = [(generate_shared_key(bytes_to_private_key(secrets[nid]),
                                         bytes_to_public_key(state.nid_to_publickeys[other][0])),
                     1 if nid > other else -1)
                    for nid in dead for other in state.nid_to_neighbours[nid] - {nid}]
        average = masked_vector.unmask(
            state.aggregate_ndarrays, q=_quantisation(state), active=len(active),
            private_seeds=[secrets[nid] for nid in active], pairwise=pairwise)
        del state.aggregate_ndarrays
        parameters = ndarrays_to_parameters(average)
        for _, fitres in state.legacy_results:
            fitres.parameters = parameters
        params, metrics = context.strategy.aggregate_fit(rnd, state.legacy_results,
                                                         state.failures)
        if params:
            context.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
                params, keep_input=True)
            context.history.add_metrics_distributed_fit(server_round=rnd, metrics=metrics)
        return True


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


def _replace_once(module_name: str, name: str, mark: str,
                  wrap: Callable[[Any], Callable[..., Any]]) -> None:
    """Replace ``module_name.name`` by ``wrap(original)`` unless it already carries ``mark``."""
    module = importlib.import_module(module_name)
    original = getattr(module, name, None)
    if original is None:
        raise FlowerVersionError(f"{module_name} has no {name}")
    if getattr(original, mark, False):
        return
    replacement = wrap(original)
    setattr(replacement, mark, True)
    setattr(module, name, replacement)


def pace_simulation() -> None:
    """Make the simulation engine look for new messages every :data:`VCE_POLL_S` (idempotent)."""
    check_version()

    def wrap(loop: Any) -> Callable[..., None]:
        def paced(state: Any, queue: Any, nodes_mapping: Any, f_stop: Any) -> None:
            loop(state, queue, nodes_mapping, _ShortWaits(f_stop))
        return paced

    _replace_once(VCE_MODULE, "add_messages_to_queue", "paced", wrap)


def engine_of(grid: Any) -> str:
    """``"simulation"`` for Flower's in-memory simulation grid, else ``"deployment"``."""
    return "simulation" if type(grid).__name__ == "InMemoryGrid" else "deployment"


def pace_object_pulls() -> None:
    """Shorten the first retry wait of Flower's object pulls in this (the ServerApp's) process."""
    check_version()
    site_flower_compat.pace_object_pulls()


SUPERLINK_MAIN_MODULE = "flwr.superlink.main"


def guard_superlink_apis() -> None:
    """Put :class:`~consortium.deployment.api_guard.HostOnlyMiddleware` in front of the
    SuperLink's own middleware (idempotent): its Control and Runtime APIs answer this host
    only. Flower builds its middleware list in ``flwr.superlink.main._get_middleware`` when it
    creates the app; 1.42 has no setting that adds one or authenticates Control callers."""
    check_version()
    from starlette.middleware import Middleware

    from consortium.deployment.api_guard import HostOnlyMiddleware

    def wrap(listed: Any) -> Callable[[], list[Any]]:
        def with_guard() -> list[Any]:
            return [Middleware(HostOnlyMiddleware), *listed()]
        return with_guard

    _replace_once(SUPERLINK_MAIN_MODULE, "_get_middleware", "guarded", wrap)


def superlink_guarded() -> bool:
    """Whether the SuperLink app this process would create has the host-only guard."""
    module = importlib.import_module(SUPERLINK_MAIN_MODULE)
    return bool(getattr(getattr(module, "_get_middleware", None), "guarded", False))


def run_superlink() -> None:
    """Flower's ``flower-superlink`` entry point, its Control and Runtime APIs for this host
    only (:func:`guard_superlink_apis`)."""
    from flwr.superlink.cli.flower_superlink import flower_superlink

    guard_superlink_apis()
    flower_superlink()
