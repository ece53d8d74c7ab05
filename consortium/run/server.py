"""Assemble the consortium server for one run: strategy, legacy context and workflow."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.serverapp import Grid

from consortium import flower_compat
from consortium.run.plan import RunPlan, plan_from_run_config
from consortium.run.resume import ResumePoint, resume_in_server, resuming
from consortium.run.strategy import ConsortiumStrategy
from consortium.run.workflow import ConsortiumWorkflow, RunOutcome
from consortium.store.records import RoundRecord
from site_node.instruction import Scalar
from site_node.model import initial_weights


def receipts_held(done: Sequence[RoundRecord]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Per site, the recorded rounds for which the consortium holds its verified receipt."""
    held: dict[str, list[int]] = {}
    for record in done:
        for site in record.sites:
            if site.epsilon is not None:  # the figures of a verified receipt
                held.setdefault(site.site, []).append(record.round)
    return tuple(sorted((site, tuple(sorted(rounds))) for site, rounds in held.items()))


def instruction_config(plan: RunPlan, rnd: int, done: Sequence[RoundRecord]
                       ) -> dict[str, Scalar]:
    """Round ``rnd``'s instruction, with the rounds whose receipts the consortium holds per
    site (a site whose ledger lacks one refuses: another site home?)."""
    instruction = replace(plan.instruction(rnd), receipts_held=receipts_held(done))
    return instruction.to_config()


def run_consortium(grid: Grid, context: Context, plan: RunPlan, *,
                   on_round: Callable[[RoundRecord], None] | None = None,
                   stop: threading.Event | None = None,
                   resume: ResumePoint | None = None) -> RunOutcome | None:
    """Run the plan on ``grid`` (from ``resume`` if given); returns how it ended."""
    flower_compat.install_masking()
    flower_compat.pace_object_pulls()
    weights = (resume.weights if resume and resume.weights
               else initial_weights(plan.model_task, plan.seed))
    workflow = ConsortiumWorkflow(plan, on_round=on_round, stop=stop, resume=resume)
    strategy = ConsortiumStrategy(
        min_sites=plan.loaded.policy.min_sites,
        initial_parameters=ndarrays_to_parameters(weights),
        fit_config=lambda rnd: instruction_config(plan, rnd, workflow.done),
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=plan.rounds),
                           strategy=strategy)
    workflow(grid, legacy)
    return workflow.outcome


def server_app_for(plan: RunPlan | None = None, *,
                   on_round: Callable[[RoundRecord], None] | None = None,
                   outcomes: list[RunOutcome] | None = None,
                   stop: threading.Event | None = None,
                   resume: ResumePoint | None = None) -> ServerApp:
    """A ServerApp that runs ``plan`` (or the plan in the Flower run config when None)."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        resolved, point = plan, resume
        if resolved is None and resuming(context.run_config):  # `consortium submit --resume`
            resolved, point = resume_in_server(context.run_config)
            if point is None:  # every planned round was recorded: closed, nothing to train
                return
        elif resolved is None:
            resolved = plan_from_run_config(context.run_config)
        outcome = run_consortium(grid, context, resolved, on_round=on_round, stop=stop,
                                 resume=point)
        if outcomes is not None and outcome is not None:
            outcomes.append(outcome)

    return app
