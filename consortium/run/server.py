"""Assemble the consortium server for one run: strategy, legacy context and workflow."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.serverapp import Grid

from consortium import flower_compat
from consortium.run.plan import RunPlan, plan_from_run_config
from consortium.run.resume import ResumePoint
from consortium.run.strategy import ConsortiumStrategy
from consortium.run.workflow import ConsortiumWorkflow, RunOutcome
from consortium.store.records import RoundRecord
from site_node.model import initial_weights


def run_consortium(grid: Grid, context: Context, plan: RunPlan, *,
                   on_round: Callable[[RoundRecord], None] | None = None,
                   stop: threading.Event | None = None,
                   resume: ResumePoint | None = None) -> RunOutcome | None:
    """Run the plan on ``grid`` (from ``resume`` if given); returns how it ended."""
    flower_compat.install_masking()
    flower_compat.pace_object_pulls()
    weights = (resume.weights if resume and resume.weights
               else initial_weights(plan.model_task, plan.seed))
    strategy = ConsortiumStrategy(
        min_sites=plan.loaded.policy.min_sites,
        initial_parameters=ndarrays_to_parameters(weights),
        fit_config=plan.fit_config,
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=plan.rounds),
                           strategy=strategy)
    workflow = ConsortiumWorkflow(plan, on_round=on_round, stop=stop, resume=resume)
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
        resolved = plan or plan_from_run_config(context.run_config)
        outcome = run_consortium(grid, context, resolved, on_round=on_round, stop=stop,
                                 resume=resume)
        if outcomes is not None and outcome is not None:
            outcomes.append(outcome)

    return app
