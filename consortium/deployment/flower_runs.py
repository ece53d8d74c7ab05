"""Which Flower runs carried each consortium run, kept in the home (``flower-runs.json``).

A consortium run keeps its id across ``consortium submit --resume``; every submission is a new
Flower run on the SuperLink. When the SuperLink stops under a run, Flower still lists the
interrupted Flower run as running after the restart, until its ServerApp's lease lapses (about
half a minute), and a site that had received one of its messages keeps asking for that
message's objects until then: a resumed run waited that long for those sites. Before
resuming, :func:`stop_unfinished` stops (``flwr stop``, Flower's Control API) each earlier Flower
run of the same consortium run that is not finished, so the sites are free at once. Only the
runs recorded here for that consortium run are touched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from consortium.deployment import superlink
from consortium.deployment.setup import Deployment
from consortium.errors import SuperLinkError

log = logging.getLogger(__name__)

FILE = "flower-runs.json"


def path(dep: Deployment) -> Path:
    """Where the home keeps its record."""
    return dep.home.root / FILE


def _read(dep: Deployment) -> dict[str, list[int]]:
    try:
        data = json.loads(path(dep).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); no earlier Flower run is stopped", path(dep), exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [int(i) for i in v if isinstance(i, int)] for k, v in data.items()
            if isinstance(v, list)}


def record(dep: Deployment, run_id: str, flower_run_id: int) -> None:
    """Add ``flower_run_id`` to the Flower runs of ``run_id`` (written atomically)."""
    data = _read(dep)
    data.setdefault(run_id, [])
    if flower_run_id not in data[run_id]:
        data[run_id].append(flower_run_id)
    partial = path(dep).with_name(f"{FILE}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path(dep))


def recorded(dep: Deployment, run_id: str) -> list[int]:
    """The Flower runs that carried ``run_id``, oldest first."""
    return _read(dep).get(run_id, [])


def stop_unfinished(dep: Deployment, federation: str, run_id: str,
                    status: Callable[[int], str]) -> list[int]:
    """Stop every recorded Flower run of ``run_id`` whose ``status`` is not finished; the ids
    stopped. A run the SuperLink cannot stop is logged and left (the resume still works, the
    sites wait for its lease as before)."""
    stopped = []
    for flower_run_id in recorded(dep, run_id):
        try:
            if status(flower_run_id).startswith(("finished", "unknown")):
                continue
            superlink.flwr_cli(dep, "stop", str(flower_run_id), connection=federation)
        except SuperLinkError as exc:
            log.warning("could not stop the earlier Flower run %d of run %s: %s",
                        flower_run_id, run_id, exc)
            continue
        stopped.append(flower_run_id)
    return stopped
