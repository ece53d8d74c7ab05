"""The consortium's plan for a run: policy + overrides, resolved once into frozen settings.

The noise multiplier is resolved here: given directly by the policy, or derived from the
policy's target ε for the number of rounds actually planned (so that the whole run spends at most
that ε at the policy's δ, under the policy's accountant).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from consortium import wire
from consortium.keys import default_store_path
from policies.loader import LoadedPolicy, load_policy
from site_node.accounting import noise_for_target

Scalar = bool | bytes | float | int | str


class PlanError(Exception):
    """A run setting is invalid; the message names the setting."""


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything the consortium needs to run, resolved and validated."""

    loaded: LoadedPolicy
    store_path: Path
    rounds: int
    seed: int
    run_id: str
    noise_multiplier: float
    engine: str = "simulation"

    @property
    def policy_sha256(self) -> str:
        """Content hash of the policy in force."""
        return self.loaded.sha256

    def fit_config(self, rnd: int) -> dict[str, Scalar]:
        """The instruction every site receives for round ``rnd``."""
        p = self.loaded.policy
        return {
            wire.RUN_ID: self.run_id,
            wire.ROUND: rnd,
            wire.POLICY_SHA256: self.policy_sha256,
            wire.NOISE_MULTIPLIER: self.noise_multiplier,
            wire.SAMPLE_RATE: p.dp.sample_rate,
            wire.MAX_GRAD_NORM: p.dp.max_grad_norm,
            wire.LOCAL_EPOCHS: p.dp.local_epochs,
            wire.LEARNING_RATE: p.dp.learning_rate,
            wire.ACCOUNTANT: p.dp.accountant,
            wire.DELTA: p.delta,
            wire.EPSILON_CEILING: p.epsilon_ceiling,
            wire.LIFETIME_EPSILON_CEILING: p.lifetime_epsilon_ceiling,
            wire.ROUNDS_PLANNED: self.rounds,
        }

    def secagg_json(self) -> str:
        """The SecAgg+ parameters in force, as JSON for the run store."""
        return json.dumps(self.loaded.policy.secagg.model_dump(mode="json"), sort_keys=True)


def make_plan(
    *,
    policy_path: Path | str | None = None,
    store_path: Path | str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    run_id: str | None = None,
    engine: str = "simulation",
) -> RunPlan:
    """Load the policy and resolve the run's settings.

    Raises
    ------
    policies.loader.PolicyError
        If the policy file is invalid.
    PlanError
        If an override is invalid.
    """
    loaded = load_policy(policy_path)
    policy = loaded.policy
    n_rounds = policy.rounds if rounds in (None, 0) else int(rounds)
    if n_rounds < 1:
        raise PlanError(f"rounds: must be >= 1 (got {n_rounds})")
    if seed < 0:
        raise PlanError(f"seed: must be >= 0 (got {seed})")
    dp = policy.dp
    if dp.noise_multiplier is not None:
        sigma = dp.noise_multiplier
    else:
        assert dp.target_epsilon is not None  # the schema guarantees one of them
        sigma = noise_for_target(
            target_epsilon=dp.target_epsilon, delta=policy.delta, sample_rate=dp.sample_rate,
            steps=dp.steps_per_round * n_rounds, accountant=dp.accountant,
        )
    return RunPlan(
        loaded=loaded,
        store_path=Path(store_path or default_store_path()).expanduser().resolve(),
        rounds=n_rounds, seed=seed, run_id=run_id or str(uuid.uuid4()),
        noise_multiplier=sigma, engine=engine,
    )


def plan_from_run_config(run_config: Mapping[str, Scalar]) -> RunPlan:
    """Resolve a plan from a Flower run config (``[tool.flwr.app.config]`` + overrides)."""
    return make_plan(
        policy_path=str(run_config.get("policy") or "") or None,
        store_path=str(run_config.get("store") or "") or None,
        rounds=int(run_config.get("num-server-rounds", 0) or 0),
        seed=int(run_config.get("seed", 0) or 0),
        run_id=str(run_config.get("run-id") or "") or None,
        engine=str(run_config.get("engine") or "simulation"),
    )
