"""The consortium's Flower strategy: it collects each round's replies and leaves the decision
to the workflow.

With SecAgg+, Flower hands :meth:`aggregate_fit` one result per site whose parameters are all
the already unmasked *weighted average*; the per-site parts are only the plaintext metrics and
example counts. This strategy keeps those replies, keyed by the node that sent them, and the
candidate aggregate, and returns no parameters: the workflow accepts the aggregate as the new
global model only after every reply is attributed and checked and the aggregate is finite and
within range (:mod:`consortium.run.workflow`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.common import EvaluateRes, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from consortium.run.attribution import Reply

log = logging.getLogger(__name__)


@dataclass
class FitRound:
    """What the server received in one round's training."""

    replies: list[Reply] = field(default_factory=list)
    failures: int = 0
    aggregate: list[np.ndarray] | None = None


@dataclass(frozen=True)
class EvalReply:
    """One node's evaluation of the global model."""

    reply: Reply
    loss: float


class ConsortiumStrategy(FedAvg):
    """FedAvg's sampling (every member, every round) with the decision left to the workflow.

    Parameters
    ----------
    min_sites : int
        Sites that must be available for every fit and evaluate round.
    initial_parameters : Parameters
        The run's seeded initial global model.
    fit_config : callable
        Round number -> the instruction every site receives.
    """

    def __init__(self, *, min_sites: int, initial_parameters: Parameters,
                 fit_config: Callable[[int], dict[str, Scalar]]) -> None:
        super().__init__(
            fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=min_sites,
            min_evaluate_clients=min_sites, min_available_clients=min_sites,
            initial_parameters=initial_parameters, on_fit_config_fn=fit_config,
            on_evaluate_config_fn=fit_config, accept_failures=True,
        )
        self.fits: dict[int, FitRound] = {}
        self.evals: dict[int, list[EvalReply]] = {}

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Keep the replies and the (SecAgg+-unmasked) candidate aggregate; decide nothing."""
        self.fits[server_round] = FitRound(
            replies=[Reply(int(proxy.node_id), int(res.num_examples), dict(res.metrics))
                     for proxy, res in results],
            failures=len(failures),
            aggregate=parameters_to_ndarrays(results[0][1].parameters) if results else None,
        )
        return None, {}

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Keep each node's loss and metrics."""
        self.evals[server_round] = [
            EvalReply(Reply(int(proxy.node_id), int(res.num_examples), dict(res.metrics)),
                      float(res.loss))
            for proxy, res in results
        ]
        return None, {}
