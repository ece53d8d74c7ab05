"""FedAvg over the SecAgg+ masked sum, collecting each site's reported figures per round.

With SecAgg+, Flower hands :meth:`aggregate_fit` results whose parameters are all the already
unmasked *weighted average*; the per-site parts are only the plaintext metrics and example
counts. This strategy keeps those per round (keyed by the site id each site reports) so that the
workflow can record them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flwr.common import EvaluateRes, FitRes, Parameters, Scalar
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from consortium import wire

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteFit:
    """What one site reported with its (masked) update."""

    site: str
    num_examples: int
    metrics: dict[str, Scalar]


@dataclass(frozen=True)
class SiteEval:
    """One site's evaluation of the global model."""

    site: str
    loss: float
    num_examples: int
    accuracy: float


class ConsortiumFedAvg(FedAvg):
    """FedAvg that samples every member site and records per-site results.

    Parameters
    ----------
    min_sites : int
        Sites required for every fit and evaluate round.
    initial_parameters : Parameters
        The run's seeded initial global model.
    fit_config : callable
        Round number -> the instruction every site receives.
    """

    def __init__(
        self,
        *,
        min_sites: int,
        initial_parameters: Parameters,
        fit_config: Callable[[int], dict[str, Scalar]],
    ) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=min_sites,
            min_evaluate_clients=min_sites,
            min_available_clients=min_sites,
            initial_parameters=initial_parameters,
            on_fit_config_fn=fit_config,
            on_evaluate_config_fn=fit_config,
            accept_failures=True,
        )
        self.fits: dict[int, list[SiteFit]] = {}
        self.evals: dict[int, list[SiteEval]] = {}
        self.fit_failures: dict[int, int] = {}

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Keep the sites' plaintext figures, then average (the masked sum is already one)."""
        self.fits[server_round] = [
            SiteFit(str(res.metrics.get(wire.SITE, proxy.cid)), res.num_examples, dict(res.metrics))
            for proxy, res in results
        ]
        self.fit_failures[server_round] = len(failures)
        return super().aggregate_fit(server_round, results, failures)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Keep each site's loss and accuracy, then aggregate the loss as FedAvg does."""
        self.evals[server_round] = [
            SiteEval(
                site=str(res.metrics.get(wire.SITE, proxy.cid)),
                loss=float(res.loss),
                num_examples=int(res.num_examples),
                accuracy=float(res.metrics.get(wire.ACCURACY, float("nan"))),
            )
            for proxy, res in results
        ]
        return super().aggregate_evaluate(server_round, results, failures)
