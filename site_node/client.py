"""The site's Flower client: DP-SGD training and local evaluation on the hospital's own data.

Everything the consortium asks arrives as an :class:`~site_node.instruction.Instruction`; the
site's :class:`~site_node.privacy.guard.SiteGuard` tightens it by the site's own policy and
admits or refuses it before any training. A refusal is a reply too: the site sends the incoming
global model with weight 0 (SecAgg+ multiplies it by 0, so it adds nothing to the sum) and the
reason in clear, so the coordinator sees why, and nothing is trained or spent.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.client import NumPyClient

from site_node.data import SiteData, load_site
from site_node.errors import ConfigError, DataError, Refusal
from site_node.instruction import parse_instruction
from site_node.privacy.guard import SiteGuard
from site_node.protocol import wire
from site_node.protocol.errors import InstructionError, ProtocolError
from site_node.protocol.receipt import SignedReceipt
from site_node.settings import NodeSettings
from site_node.training import evaluate, train_dp

log = logging.getLogger(__name__)

Scalar = bool | bytes | float | int | str
FitReply = tuple[list[np.ndarray], int, dict[str, Scalar]]


@functools.lru_cache(maxsize=8)
def _cached_site(site: str, path: str | None, stamp: tuple[int, int] | None) -> SiteData:
    del stamp  # part of the cache key: a changed file is read again
    return load_site(site, Path(path) if path else None)


def site_data(settings: NodeSettings) -> SiteData:
    """The site's prepared data, read once per process while the file is unchanged."""
    path = settings.data_path
    stamp = None
    if path is not None:
        try:
            st = Path(path).stat()
        except OSError as exc:
            raise DataError(f"site {settings.site}: cannot read data file {path}: {exc}") from None
        stamp = (st.st_mtime_ns, st.st_size)
    return _cached_site(settings.site, str(path) if path else None, stamp)


def _all_finite(weights: list[np.ndarray]) -> bool:
    return all(bool(np.isfinite(w).all()) for w in weights)


class SiteClient(NumPyClient):
    """One hospital's training and evaluation."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings

    def _refuse(self, parameters: list[np.ndarray], reason: str) -> FitReply:
        log.warning("%s", reason)
        return parameters, 0, {wire.SITE: self.settings.site, wire.REFUSAL: reason}

    def _resend(self, parameters: list[np.ndarray], earlier: SignedReceipt) -> FitReply:
        r = earlier.receipt
        reason = (f"site {r.site} already trained round {r.round} of run {r.run_id} (before an "
                  "interruption): it re-sends that round's receipt and never trains it twice")
        log.warning("%s", reason)
        return parameters, 0, {wire.SITE: self.settings.site, wire.REFUSAL: reason,
                               **earlier.to_wire()}

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Scalar]) -> FitReply:
        """One round of DP-SGD, or a refusal (weight 0, reason in clear) before any training."""
        site = self.settings.site
        try:
            instruction = parse_instruction(config)
            guard = SiteGuard(self.settings)
            guard.signing_key()
            earlier = guard.spent_before(instruction)
            if earlier is not None:
                return self._resend(parameters, earlier)
            if not _all_finite(parameters):
                raise Refusal(f"site {site} refuses: the global model it received is not finite")
            data = site_data(self.settings)
            max_weight = instruction.policy.policy.secagg.max_weight
            if data.num_train > max_weight:
                raise Refusal(f"site {site} refuses: its {data.num_train} training examples "
                              f"exceed secagg.max_weight {max_weight:g} (SecAgg+ would "
                              "overflow its weight)")
            admitted = guard.admit(instruction)
        except (Refusal, InstructionError, ConfigError, DataError, ProtocolError) as exc:
            return self._refuse(parameters, str(exc))
        result = train_dp(parameters, data, admitted.plan)
        if not _all_finite(result.weights):
            return self._refuse(parameters, f"site {site} refuses: its update is not finite; "
                                "nothing was recorded or sent")
        signed = guard.record(admitted, weights=result.weights, mechanism=result.mechanism,
                              num_examples=data.num_train)
        return result.weights, data.num_train, {wire.SITE: site, **signed.to_wire()}

    def evaluate(self, parameters: list[np.ndarray], config: Mapping[str, Scalar]
                 ) -> tuple[float, int, dict[str, Scalar]]:
        """Loss and accuracy of the global model on this site's test split."""
        data = site_data(self.settings)
        loss, accuracy = evaluate(parameters, data.x_test, data.y_test)
        return loss, data.num_test, {wire.SITE: self.settings.site, wire.ACCURACY: accuracy}
