"""Ray for Flower's simulation engine: started as Flower's backend starts it, early if asked.

Starting Ray (its GCS, raylet and helper processes) takes 2-3 s on two cores, and so does
loading torch and Opacus and checking the plan and the sites' data in the coordinator's
process. Most of Ray's start is other processes starting, so the two overlap well:
:func:`start_in_background` starts Ray in a thread once the run's inputs have been read;
:func:`start` (called by the simulation) waits for that start, or starts Ray itself; and
:func:`stop` shuts down a Ray that Flower will not, when a run is refused or fails after Ray was
started and before Flower's simulation took it over (Flower shuts Ray down when a simulation
ends).

The thread that starts Ray must outlive it: Ray binds its processes to the thread that spawned
them (Linux ``PR_SET_PDEATHSIG`` fires when that *thread* ends, and the GCS and raylet would die
with it). So the starting thread stays, idle, until Ray has been shut down.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: What ``ray.init`` logs that is no news to a coordinator, and is not shown: that it runs
#: outside the main thread (true and expected: the coordinator installs its own SIGINT/SIGTERM
#: handlers), and that it started (the run's header says what runs).
_QUIET = ("SIGTERM handler is not set because current thread is not the main thread",
          "Started a local Ray instance")
_RAY_WORKER_LOGGER = "ray._private.worker"
#: Ray 2.55's notice, at every start, of a future change to CUDA_VISIBLE_DEVICES for actors
#: without GPUs; the behaviour of this release is kept (the notice's switch would change it).
_ACCELERATOR_NOTICE = r"Tip: In future versions of Ray, Ray will no longer override accelerator"
#: How often the starting thread looks whether Ray has been shut down.
_KEEP_ALIVE_S = 0.5


def backend_config(num_sites: int, *, gpu: bool = False) -> dict[str, Any]:
    """Ray resources: up to two clients at a time, sized to this machine's cores; with ``gpu``
    (sites that train on CUDA) each client gets its share of one GPU (Ray hides the GPUs from
    an actor that asked for none)."""
    cpus = os.cpu_count() or 2
    per_client = max(1, cpus // min(num_sites, 2))
    return {
        "client_resources": {"num_cpus": per_client,
                             "num_gpus": 1.0 / min(num_sites, 2) if gpu else 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }


@dataclass
class _Start:
    """A start of Ray in a background thread."""

    config: dict[str, Any]
    thread: threading.Thread = field(init=False)
    started: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        # A daemon: it must not hold the interpreter's exit (Ray's own exit hook shuts Ray down).
        self.thread = threading.Thread(target=self._run, name="ray-start", daemon=True)

    def _run(self) -> None:
        import ray

        try:
            _init(self.config)
        except BaseException as err:  # handed to the thread that waits for it
            self.error = err
            return
        finally:
            self.started.set()
        while ray.is_initialized():  # outlive Ray's processes (see the module's docstring)
            time.sleep(_KEEP_ALIVE_S)

    def wait(self) -> None:
        self.started.wait()


_lock = threading.Lock()
_pending: _Start | None = None


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(quiet in message for quiet in _QUIET)


def _quieten() -> None:
    worker_log = logging.getLogger(_RAY_WORKER_LOGGER)
    if not any(isinstance(f, _Quiet) for f in worker_log.filters):
        worker_log.addFilter(_Quiet())
    warnings.filterwarnings("ignore", message=_ACCELERATOR_NOTICE, category=FutureWarning)


def _init(config: dict[str, Any]) -> None:
    """``ray.init`` as Flower's ``RayBackend.init_ray`` calls it (no-op if Ray is running)."""
    import ray

    if ray.is_initialized():
        return
    _quieten()
    args = dict(config.get("init_args", {}))
    args.setdefault("include_dashboard", False)
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **args)


def _take_pending() -> _Start | None:
    global _pending
    with _lock:
        pending, _pending = _pending, None
    return pending


def start_in_background(config: dict[str, Any]) -> None:
    """Start Ray in a thread and return at once (no-op if Ray runs or is being started)."""
    global _pending
    import ray  # imported here, not in the thread, so that the two threads share no import

    with _lock:
        if _pending is not None or ray.is_initialized():
            return
        _pending = _Start(config)
        _pending.thread.start()
    log.debug("starting Ray in the background")


def start(config: dict[str, Any]) -> None:
    """Make sure Ray runs with ``config``: wait for a background start, or start it here.

    Ray is started before the caller installs its signal handlers (``ray.init`` in the main
    thread replaces the SIGTERM handler).
    """
    pending = _take_pending()
    if pending is not None:
        pending.wait()
        if pending.error is None and pending.config == config:
            return
        if pending.error is not None:
            log.warning("Ray's background start failed (%s); starting it again", pending.error)
        stop()
    _init(config)


def stop() -> None:
    """Shut Ray down if it runs or is being started (waits for a background start first)."""
    pending = _take_pending()
    if pending is not None:
        pending.wait()
    import ray

    if ray.is_initialized():
        ray.shutdown()
