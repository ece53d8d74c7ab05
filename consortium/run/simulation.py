"""Run the local demonstration on Flower's (Ray-backed) simulation engine, in this process.

One virtual SuperNode per member site, each playing that site with the node settings the
demonstration prepared (its own site home, its data); the ServerApp runs in a thread of this
process, so progress is reported per round through a callback.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from consortium import flower_compat
from consortium.errors import SimulationError
from consortium.run import ray_session
from consortium.run.plan import RunPlan
from consortium.run.resume import ResumePoint
from consortium.run.workflow import RunOutcome
from consortium.store.records import RoundRecord
from site_node.settings import NodeSettings

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM set ``stop`` (the run ends within a second, recorded as interrupted);
    a second signal aborts at once."""

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum} again")
        stop.set()
        log.warning("stopping the run (signal %d; send it again to abort at once)", signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
    stop = stop or threading.Event()
    backend = ray_session.backend_config(len(sites), gpu=uses_gpu(sites))
    ray_session.start(backend)  # before our signal handlers: ray.init replaces them
    flower_compat.pace_simulation()
    with stop_on_signals(stop):
        run_simulation(
            server_app=server_app_for(plan, on_round=on_round, outcomes=outcomes, stop=stop,
                                      resume=resume),
            client_app=client_app_for(list(sites)), num_supernodes=len(sites),
            backend_config=backend,
            verbose_logging=verbose,
        )
    if not outcomes:
        raise SimulationError(f"run {plan.run_id} ended without an outcome; see the log and the "
                              f"run store {plan.store_path}")
    return outcomes[0]


def uses_gpu(sites: Sequence[NodeSettings]) -> bool:
    """Whether any site trains on CUDA on this machine (``auto`` included, when there is one)."""
    from site_node.device import resolve_device

    return any(resolve_device(s.device, field=f"site {s.site}: device").type == "cuda"
               for s in sites)
