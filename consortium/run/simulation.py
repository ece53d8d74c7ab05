"""Run the local demonstration on Flower's (Ray-backed) simulation engine, in this process.

One virtual SuperNode per member site, each playing that site with the node settings the
demonstration prepared (its own site home, its data); the ServerApp runs in a thread of this
process, so progress is reported per round through a callback.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from consortium.errors import SimulationError
from consortium.run.plan import RunPlan
from consortium.run.resume import ResumePoint
from consortium.run.workflow import RunOutcome
from consortium.store.records import RoundRecord
from site_node.settings import NodeSettings

log = logging.getLogger(__name__)


def backend_config(num_sites: int) -> dict[str, object]:
    """Ray resources: up to two clients at a time, sized to this machine's cores."""
    cpus = os.cpu_count() or 2
    per_client = max(1, cpus // min(num_sites, 2))
    return {
        "client_resources": {"num_cpus": per_client, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }


def simulate(plan: RunPlan, sites: Sequence[NodeSettings], *,
             on_round: Callable[[RoundRecord], None] | None = None,
             verbose: bool = False, stop: threading.Event | None = None,
             resume: ResumePoint | None = None) -> RunOutcome:
    """Run ``plan`` with one virtual node per site of ``sites``; returns how it ended.

    Raises
    ------
    SimulationError
        If the ServerApp ended without an outcome (it failed; the store says why).
    """
    from flwr.simulation import run_simulation

    from consortium.run.server import server_app_for
    from site_node.client_app import client_app_for

    if not verbose:  # importing flwr set its logger to DEBUG; keep the console for progress
        flwr_log = logging.getLogger("flwr")
        flwr_log.setLevel(logging.ERROR)
        flwr_log.propagate = False
    outcomes: list[RunOutcome] = []
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    run_simulation(
        server_app=server_app_for(plan, on_round=on_round, outcomes=outcomes, stop=stop,
                                  resume=resume),
        client_app=client_app_for(list(sites)), num_supernodes=len(sites),
        backend_config=backend_config(len(sites)),  # type: ignore[arg-type]
        verbose_logging=verbose,
    )
    if not outcomes:
        raise SimulationError(f"run {plan.run_id} ended without an outcome; see the log and the "
                              f"run store {plan.store_path}")
    return outcomes[0]
