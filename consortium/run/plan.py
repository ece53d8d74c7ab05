"""The consortium's plan for a run: policy + overrides, resolved once into frozen settings.

The noise multiplier is resolved here: given directly by the policy, or derived from the
policy's target ε for the number of rounds actually planned (so that the whole run spends at most
that ε at the policy's δ, under the policy's accountant), by the one ε computation of
:mod:`site_node.privacy.accountant`. The task (what is trained; ``policies/tasks``) travels with
the plan into every instruction; without one, a run trains the heart-disease example's task.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from consortium.errors import PlanError
from consortium.home import default_store_path
from consortium.store.records import MODE_DEMO, MODE_DEPLOYMENT, RunMode
from policies.example import DEFAULT_EXAMPLE, load_example
from policies.loader import LoadedPolicy, load_policy
from policies.schema import MAX_ROUNDS
from policies.task import AnyTask
from policies.task_loader import LoadedTask, load_task
from site_node.demo import run_example, run_policy_path
from site_node.instruction import Instruction, Scalar
from site_node.privacy.run_mechanism import run_noise_multiplier
from site_node.protocol import run_config as run_config_keys
from site_node.protocol.mechanism import Mechanism

MAX_SEED = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything the consortium needs to run, resolved and validated."""

    loaded: LoadedPolicy
    task: LoadedTask
    store_path: Path
    rounds: int
    seed: int
    run_id: str
    noise_multiplier: float
    mode: RunMode = MODE_DEPLOYMENT
    example_site_policies: bool = False
    #: Site -> SHA-256 of its data, when the consortium holds the sites' data (a local run).
    data_fingerprints: dict[str, str] | None = None
    #: How the training settings were chosen (canonical JSON of :class:`policies.choice.Choice`)
    #: when the policy stated only the privacy terms; None when it set them itself.
    choice_json: str | None = None

    @property
    def model_task(self) -> AnyTask:
        """The task as this run's members train it (with their site indicator, if any)."""
        return self.task.task.for_members(self.loaded.policy.sites)

    @property
    def policy_sha256(self) -> str:
        """Content hash of the policy in force."""
        return self.loaded.sha256

    @property
    def demo(self) -> bool:
        """Whether this is the local demonstration (it provisions the sites' keys)."""
        return self.mode == MODE_DEMO

    def instruction(self, rnd: int) -> Instruction:
        """What every site is asked in round ``rnd``."""
        return Instruction(run_id=self.run_id, round=rnd, rounds_planned=self.rounds,
                           policy=self.loaded, task=self.task,
                           noise_multiplier=self.noise_multiplier)

    def fit_config(self, rnd: int) -> dict[str, Scalar]:
        """The instruction as the round's config record."""
        return self.instruction(rnd).to_config()

    def mechanism(self) -> Mechanism:
        """One round's DP-SGD mechanism at every site under the consortium policy."""
        dp = self.loaded.policy.dp
        return Mechanism(noise_multiplier=self.noise_multiplier,
                         sample_rate=float(dp.sample_rate), steps=dp.steps_per_round,
                         max_grad_norm=float(dp.max_grad_norm), accountant=dp.accountant,
                         unit=self.task.task.privacy_unit.unit)

    def secagg_json(self) -> str:
        """The SecAgg+ parameters in force, as JSON for the run store."""
        return json.dumps(self.loaded.policy.secagg.model_dump(mode="json"), sort_keys=True)


def _int_option(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlanError(f"{name}: must be a whole number in [{low}, {high}] (got {value!r})")
    return value


def default_task() -> LoadedTask:
    """The task of the default example (heart disease)."""
    return load_task(load_example(DEFAULT_EXAMPLE).task)


def make_plan(
    *,
    policy_path: Path | str | None = None,
    task: LoadedTask | None = None,
    store_path: Path | str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    run_id: str | None = None,
    demo: bool = False,
    example_site_policies: bool = False,
) -> RunPlan:
    """Load the policy and resolve the run's settings (``task``: the default example's when
    None).

    Raises
    ------
    policies.errors.PolicyError
        If the policy file is invalid.
    PlanError
        If an override is invalid (the message names it).
    """
    return make_plan_from_policy(load_policy(policy_path), task or default_task(),
                                 store_path=store_path, rounds=rounds, seed=seed, run_id=run_id,
                                 demo=demo, example_site_policies=example_site_policies)


def make_plan_from_policy(
    loaded: LoadedPolicy,
    task: LoadedTask,
    *,
    store_path: Path | str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    run_id: str | None = None,
    demo: bool = False,
    example_site_policies: bool = False,
    data_fingerprints: dict[str, str] | None = None,
    choice_json: str | None = None,
) -> RunPlan:
    """Resolve a run's settings under an already validated policy (see :func:`make_plan`);
    ``data_fingerprints``: each site's data fingerprint, recorded with the run."""
    policy = loaded.policy
    n_rounds = policy.rounds if rounds in (None, 0) else _int_option("rounds", rounds, 1,
                                                                       MAX_ROUNDS)
    _int_option("seed", seed, 0, MAX_SEED)
    if example_site_policies and not demo:
        raise PlanError("example site policies belong to the local demonstration only")
    sigma = run_noise_multiplier(policy, n_rounds)
    return RunPlan(
        loaded=loaded, task=task,
        store_path=Path(store_path or default_store_path()).expanduser().resolve(),
        rounds=n_rounds, seed=seed, run_id=run_id or str(uuid.uuid4()), noise_multiplier=sigma,
        mode=MODE_DEMO if demo else MODE_DEPLOYMENT, example_site_policies=example_site_policies,
        data_fingerprints=data_fingerprints, choice_json=choice_json,
    )


def plan_from_run_config(run_config: Mapping[str, Scalar]) -> RunPlan:
    """Resolve a plan from a Flower run config (``[tool.flwr.app.config]`` + overrides), read
    with the keys both sides share (:mod:`site_node.protocol.run_config`).

    The local demonstration (server-made site keys) is only ever entered with ``demo = true``;
    its default is false, so ``flwr run`` against a SuperLink never falls into it. An empty
    ``policy`` or ``task`` is the run config ``example``'s (default: heart disease), as on the
    demonstration's nodes (:func:`site_node.demo.run_policy_path`).
    """
    try:
        config = run_config_keys.parse(run_config)
    except run_config_keys.RunConfigError as exc:
        raise PlanError(str(exc)) from None
    example = run_example(config)
    return make_plan(
        policy_path=run_policy_path(config),
        task=load_task(config.task or example.task),
        store_path=config.store,
        rounds=config.rounds,  # type: ignore[arg-type]  # checked by make_plan
        seed=config.seed,  # type: ignore[arg-type]
        run_id=config.run_id,
        demo=config.demo,
        example_site_policies=config.example_site_policies,
    )
