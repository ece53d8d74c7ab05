"""The site's Flower client: DP-SGD training and local evaluation on the hospital's own data.

A :class:`SiteClient` is built for each message from the node's context. Its privacy accountant
is restored from ``context.state`` (which Flower keeps per node across the rounds of a run) and
saved back after training, so ε is cumulative over the run. Everything the consortium asks for
arrives in the instruction's config under the keys of :mod:`consortium.wire`, and is parsed
once into a :class:`~site_node.training.TrainPlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.client import NumPyClient

from consortium import wire
from site_node.accounting import SiteAccountant
from site_node.data import SITE_IDS, SiteData, load_site
from site_node.guard import SiteGuard
from site_node.training import BudgetExceeded, TrainPlan, evaluate, train_dp

log = logging.getLogger(__name__)

Scalar = bool | bytes | float | int | str


class ConfigError(Exception):
    """An instruction from the consortium lacks a field or has a bad value."""


def plan_from_config(config: Mapping[str, Scalar]) -> TrainPlan:
    """Parse the consortium's fit instruction into a :class:`TrainPlan`."""
    try:
        return TrainPlan(
            noise_multiplier=float(config[wire.NOISE_MULTIPLIER]),
            sample_rate=float(config[wire.SAMPLE_RATE]),
            max_grad_norm=float(config[wire.MAX_GRAD_NORM]),
            local_epochs=int(config[wire.LOCAL_EPOCHS]),
            learning_rate=float(config[wire.LEARNING_RATE]),
            accountant=str(config[wire.ACCOUNTANT]),
            delta=float(config[wire.DELTA]),
            epsilon_ceiling=float(config[wire.EPSILON_CEILING]),
        )
    except KeyError as exc:
        raise ConfigError(f"fit instruction lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fit instruction has a bad value: {exc}") from None


def site_identity(node_config: Mapping[str, Scalar]) -> tuple[str, Path | None]:
    """The site id and data path from the node's own configuration.

    A deployed SuperNode sets ``site-id`` (and optionally ``data-path``) in its node config;
    these never travel. In Flower's simulation engine, the virtual node's ``partition-id``
    selects one of the embedded hospitals.
    """
    if wire.NODE_SITE_ID in node_config:
        site = str(node_config[wire.NODE_SITE_ID])
        path = node_config.get(wire.NODE_DATA_PATH)
        return site, Path(str(path)) if path else None
    if wire.NODE_PARTITION_ID in node_config:
        pid = int(node_config[wire.NODE_PARTITION_ID])
        if not 0 <= pid < len(SITE_IDS):
            raise ConfigError(
                f"partition-id {pid} has no embedded hospital (0..{len(SITE_IDS) - 1})"
            )
        return SITE_IDS[pid], None
    raise ConfigError(f"node config lacks {wire.NODE_SITE_ID!r}")


def load_accountant(context: Context, run_id: str, accountant: str) -> SiteAccountant:
    """This run's accountant from the node state (a new one at the run's first round)."""
    record = context.state.config_records.get(wire.STATE_PRIVACY)
    if record is not None and record.get(wire.STATE_RUN_ID) == run_id:
        restored = SiteAccountant.from_json(str(record[wire.STATE_ACCOUNTANT_JSON]))
        if restored.accountant != accountant:
            raise ConfigError(
                f"accountant changed mid-run: {restored.accountant!r} -> {accountant!r}"
            )
        return restored
    return SiteAccountant(accountant=accountant)


def save_accountant(context: Context, run_id: str, accountant: SiteAccountant) -> None:
    """Persist the accountant in the node state."""
    context.state.config_records[wire.STATE_PRIVACY] = ConfigRecord(
        {wire.STATE_RUN_ID: run_id, wire.STATE_ACCOUNTANT_JSON: accountant.to_json()}
    )


def _run_delta_epsilon(
    config: Mapping[str, Scalar], plan: TrainPlan, epsilon: float, accountant: SiteAccountant
) -> float:
    """ε at the run's δ (what the run store compares across sites), even when the site's own
    policy tightened δ; the site's receipt states ε at its own δ."""
    run_delta = float(config[wire.DELTA])
    return epsilon if run_delta == plan.delta else accountant.epsilon(run_delta)


class SiteClient(NumPyClient):
    """One hospital's training and evaluation."""

    def __init__(self, data: SiteData, context: Context) -> None:
        self.data = data
        self.node_context = context
        state_dir = context.node_config.get(wire.NODE_STATE_DIR)
        self.state_dir = Path(str(state_dir)) if state_dir else None

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:
        """One round of DP-SGD; refuses (raises) before training if over the ε ceiling."""
        run_id = str(config.get(wire.RUN_ID, ""))
        guard = SiteGuard(self.data.site, self.state_dir)
        try:
            plan = guard.before_training(config, plan_from_config(config))
            accountant = load_accountant(self.node_context, run_id, plan.accountant)
            result = train_dp(parameters, self.data, plan, accountant)
        except BudgetExceeded as exc:
            log.warning("%s", exc)
            raise
        receipt = guard.after_training(config, plan, result, self.data.num_train)
        save_accountant(self.node_context, run_id, accountant)
        mech = result.mechanism
        metrics: dict[str, Scalar] = {
            wire.SITE: self.data.site,
            wire.EPSILON: _run_delta_epsilon(config, plan, result.epsilon, accountant),
            wire.NOISE_MULTIPLIER: mech.noise_multiplier,
            wire.SAMPLE_RATE: mech.sample_rate,
            wire.STEPS: mech.steps,
            wire.MAX_GRAD_NORM: mech.max_grad_norm,
            wire.ACCOUNTANT: mech.accountant,
            wire.NUM_TRAIN_EXAMPLES: self.data.num_train,
            wire.TRAIN_LOSS: result.train_loss,
            **receipt,
        }
        return result.weights, self.data.num_train, metrics

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Loss and accuracy of the global model on this site's test split."""
        loss, accuracy = evaluate(parameters, self.data.x_test, self.data.y_test)
        return loss, self.data.num_test, {wire.SITE: self.data.site, wire.ACCURACY: accuracy}


def client_for(context: Context) -> SiteClient:
    """Build the site's client from the node context (site id and data stay local)."""
    site, path = site_identity(context.node_config)
    return SiteClient(load_site(site, path), context)
