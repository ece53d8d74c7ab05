"""The site's Flower client: DP-SGD training and local evaluation on the hospital's own data.

Everything the consortium asks arrives as an :class:`~site_node.instruction.Instruction`; the
site's :class:`~site_node.privacy.guard.SiteGuard` tightens it by the site's own policy and
admits or refuses it before any training. A refusal is a reply too: the site sends the incoming
global model with weight 0 (SecAgg+ multiplies it by 0, so it adds nothing to the sum) and the
reason in clear, so the coordinator sees why, and nothing is trained or spent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.client import NumPyClient

from policies.documents import MAX_BYTES, parse_document
from policies.errors import PolicyError
from policies.task_loader import LoadedTask, parse_task
from site_node import node_cache
from site_node.baseline import majority_rate
from site_node.data import SiteData, load_cached, with_site_indicator
from site_node.data.fingerprint import cached_fingerprint
from site_node.device import resolve_device
from site_node.errors import ConfigError, DataError, FinalRefusal, Refusal, TrainingError
from site_node.instruction import Instruction, parse_instruction
from site_node.model import build_model, set_weights
from site_node.privacy.guard import SiteGuard
from site_node.protocol import wire
from site_node.protocol.errors import InstructionError, ProtocolError
from site_node.protocol.receipt import SignedReceipt
from site_node.settings import NodeSettings
from site_node.training import evaluate, train_dp

log = logging.getLogger(__name__)

#: Under the node's state directory: values derived from public settings only, kept between
#: ClientApp processes (:mod:`site_node.node_cache`).
NODE_CACHE_DIR = "cache"
#: The node cache kind keeping a task file's identity by the SHA-256 of its bytes.
TASK_CACHE = "task-files"

Scalar = bool | bytes | float | int | str
FitReply = tuple[list[np.ndarray], int, dict[str, Scalar]]


def site_data(settings: NodeSettings, task: LoadedTask) -> SiteData:
    """The site's data, validated against ``task`` (kept per process while unchanged); an image
    task's backbone file is looked up in the node's features folder (``features-dir``; default:
    beside the data).

    Raises
    ------
    ConfigError
        If the node has no data file.
    DataError
        (:class:`~site_node.data.DataRefused`) if the data do not fit the task.
    """
    if settings.data_path is None:
        raise ConfigError(f"site {settings.site} has no data: start the node with --data")
    return load_cached(task, settings.data_path, features_dir=settings.features_dir)


def check_task(settings: NodeSettings, instruction: Instruction) -> None:
    """Refuse an instruction for another task than the one the site admin started the node for.

    Raises
    ------
    Refusal
        If the node was started for a task (``--task``) and the instruction asks for another.
    ConfigError
        If the node's task file cannot be read.
    """
    if settings.task_path is None:
        return
    name, sha256 = agreed_task(settings.task_path)
    asked = instruction.task
    if sha256 != asked.sha256:
        raise Refusal(f"site {settings.site} refuses: the consortium asks for task {asked.name} "
                      f"(sha256 {asked.sha256[:16]}…) but this node was started for task "
                      f"{name} (sha256 {sha256[:16]}…, {settings.task_path})")


def agreed_task(path: Path) -> tuple[str, str]:
    """The name and canonical SHA-256 of the task file the node was started for.

    Every message runs in a process of its own, and parsing the file (strict YAML, then the
    schema) cost about 0.1 s of CPU each time; the identity of a file whose bytes were parsed
    before is kept in the node cache (:data:`TASK_CACHE`), keyed by the SHA-256 of those bytes,
    so changed bytes are always parsed again.

    Raises
    ------
    ConfigError
        If the file cannot be read or is not a valid task.
    """
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # parse_document refuses a larger file
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    key = hashlib.sha256(raw).hexdigest()
    kept = node_cache.get(TASK_CACHE, key)
    if isinstance(kept, list) and len(kept) == 2 and all(isinstance(v, str) for v in kept):
        return kept[0], kept[1]
    try:
        loaded = parse_task(parse_document(raw, str(path)), str(path))
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    node_cache.put(TASK_CACHE, key, [loaded.task.name, loaded.sha256])
    return loaded.task.name, loaded.sha256


def _fits_task(parameters: list[np.ndarray], instruction: Instruction, site: str) -> None:
    try:
        set_weights(build_model(instruction.model_task), parameters)
    except ValueError as exc:
        raise Refusal(f"site {site} refuses: the global model it received does not fit task "
                      f"{instruction.task.name}: {exc}") from None


def checked_data(settings: NodeSettings, instruction: Instruction) -> SiteData:
    """The site's data for ``instruction``, after the checks that need no model or ledger.

    The task must be the one the node was started for, the data must fit it, and the training
    examples must not exceed SecAgg+'s ``max_weight``.

    Raises
    ------
    Refusal
        Naming the site and why; nothing was trained or spent.
    ConfigError
        If the node has no data file or its task file cannot be read.
    """
    site = settings.site
    check_task(settings, instruction)
    try:
        data = with_site_indicator(site_data(settings, instruction.task),
                                   instruction.model_task, site)
    except DataError as exc:
        raise Refusal(f"site {site} refuses before any training: {exc}") from None
    max_weight = instruction.policy.policy.secagg.max_weight
    if data.num_train > max_weight:
        raise Refusal(f"site {site} refuses: its {data.num_train} training examples exceed "
                      f"secagg.max_weight {max_weight:g} (SecAgg+ would overflow its weight)")
    return data


def _all_finite(weights: list[np.ndarray]) -> bool:
    return all(bool(np.isfinite(w).all()) for w in weights)


class SiteClient(NumPyClient):
    """One hospital's training and evaluation."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        node_cache.configure(settings.state_dir / NODE_CACHE_DIR)

    def _refuse(self, parameters: list[np.ndarray], reason: str, *, final: bool = False
                ) -> FitReply:
        log.warning("%s", reason)
        reply: dict[str, Scalar] = {wire.SITE: self.settings.site, wire.REFUSAL: reason}
        if final:
            reply[wire.REFUSAL_FINAL] = True
        return parameters, 0, reply

    def _resend(self, parameters: list[np.ndarray], earlier: SignedReceipt) -> FitReply:
        r = earlier.receipt
        reason = (f"site {r.site} already trained round {r.round} of run {r.run_id} (before an "
                  "interruption): it re-sends that round's receipt and never trains it twice")
        log.warning("%s", reason)
        return parameters, 0, {wire.SITE: self.settings.site, wire.REFUSAL: reason,
                               **earlier.to_wire()}

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Scalar]) -> FitReply:
        """One round of DP-SGD, or a refusal (weight 0, reason in clear) before any training.

        Before training the site checks, in order: the instruction (policy and task re-validated
        against their hashes), the server's SecAgg+ mask version, its receipt key, whether it
        already trained this round (then it re-sends that round's receipt), that its ledger
        holds every round of the run whose receipt the consortium holds from it, the incoming
        model, the task (the one it agreed to), its data against the task, SecAgg+'s weight
        limit, the model's shape, admission (the run's data unchanged, its own policy, the
        sampling rate, its ε ceilings), and that its training device is there on this machine.
        An admission refusal is final for the run and says so (``wire.REFUSAL_FINAL``).
        """
        site = self.settings.site
        try:
            instruction = parse_instruction(config)
            masks_refused = instruction.mask_refusal(site)
            if masks_refused is not None:
                raise Refusal(masks_refused)
            guard = SiteGuard(self.settings)
            guard.signing_key()
            earlier = guard.spent_before(instruction)
            if earlier is not None:
                return self._resend(parameters, earlier)
            guard.check_history(instruction)
            if not _all_finite(parameters):
                raise Refusal(f"site {site} refuses: the global model it received is not finite")
            data = checked_data(self.settings, instruction)
            _fits_task(parameters, instruction, site)
            device = resolve_device(self.settings.device, field=f"site {site}: device")
            assert self.settings.data_path is not None  # site_data refused a node without
            admitted = guard.admit(instruction, num_examples=data.num_train,
                                   num_patients=data.num_patients,
                                   data_sha256=cached_fingerprint(self.settings.data_path))
        except FinalRefusal as exc:
            return self._refuse(parameters, str(exc), final=True)
        except (Refusal, InstructionError, ConfigError, DataError, ProtocolError) as exc:
            return self._refuse(parameters, str(exc))
        try:
            result = train_dp(parameters, data, admitted.plan, instruction.model_task,
                              device=device, max_physical_batch=self.settings.max_physical_batch)
        except TrainingError as exc:
            return self._refuse(parameters, f"site {site} refuses: {exc}; nothing was trained, "
                                "recorded or sent")
        if not _all_finite(result.weights):
            return self._refuse(parameters, f"site {site} refuses: its update is not finite; "
                                "nothing was recorded or sent")
        signed = guard.record(admitted, weights=result.weights, mechanism=result.mechanism,
                              num_examples=data.num_train)
        return result.weights, data.num_train, {wire.SITE: site, **signed.to_wire()}

    def evaluate(self, parameters: list[np.ndarray], config: Mapping[str, Scalar]
                 ) -> tuple[float, int, dict[str, Scalar]]:
        """Loss and accuracy of the global model on this site's test split.

        Raises
        ------
        SiteNodeError
            If the instruction is invalid, or the data do not fit the task (the evaluation
            fails; the server counts it as a failure).
        """
        instruction = parse_instruction(config)
        check_task(self.settings, instruction)
        task = instruction.model_task
        data = with_site_indicator(site_data(self.settings, instruction.task), task,
                                   self.settings.site)
        device = resolve_device(self.settings.device, field=f"site {self.settings.site}: device")
        loss, accuracy = evaluate(parameters, data.x_test, data.y_test, task, device=device)
        return loss, data.num_test, {wire.SITE: self.settings.site, wire.ACCURACY: accuracy,
                                     wire.MAJORITY_RATE: majority_rate(data.y_test)}
