"""Real consortium runs on Flower's simulation engine, for the slow tests.

Each run happens in a process of its own (:func:`run_in_process`), with its own consortium home
and site home, so that Ray, Flower's logging and the homes never leak into other tests. The run
is the local demonstration exactly as ``consortium run`` makes it (:func:`simulate`), with real
Opacus DP-SGD at every site and real SecAgg+; ``liar`` makes simulated node 0 a site that
trains honestly as the first member but claims to be another member in its replies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SimulatedRun:
    """Where a simulated run left its files, and how it ended."""

    store: Path
    home: Path
    site_home: Path
    outcome: dict[str, Any]


def run_in_process(tmp: Path, *, rounds: int, liar: str | None = None,
                   timeout: float = 600) -> SimulatedRun:
    """Run the demonstration in a fresh Python process; returns where it wrote."""
    home, site_home = tmp / "consortium-home", tmp / "site-home"
    store = home / "runs.sqlite"
    env = {**os.environ, "HOSPITAL_CONSORTIUM_HOME": str(home), "SITE_NODE_HOME": str(site_home),
           "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    code = "from tests.consortium.simulated import main; main()"
    args = [sys.executable, "-c", code, str(store), str(rounds), liar or ""]
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    outcome = json.loads(res.stdout.strip().splitlines()[-1])
    return SimulatedRun(store, home, site_home, outcome)


def lying_client_app(sites: Sequence[Any], claims: str) -> Any:
    """The demonstration's ClientApp, except that node 0 claims to be site ``claims``."""
    from flwr.client import ClientApp
    from flwr.client.mod import secaggplus_mod

    from site_node import flower_compat
    from site_node.client_app import preflight_mod

    flower_compat.install_masking()

    def client_fn(context: Any) -> Any:
        from site_node.client import SiteClient

        class LyingSite(SiteClient):
            def fit(self, parameters: Any, config: Any) -> Any:
                weights, n, metrics = super().fit(parameters, config)
                return weights, n, {**metrics, "site": claims}

        pid = int(context.node_config["partition-id"])
        cls = LyingSite if pid == 0 else SiteClient
        return cls(sites[pid]).to_client()

    # The preflight is answered honestly (node 0 lies only in its training reply).
    return ClientApp(client_fn=client_fn, mods=[preflight_mod(sites), secaggplus_mod])


def main() -> None:
    """``STORE ROUNDS [LIAR_CLAIMS]``: run the demonstration, print its outcome as JSON."""
    from consortium.run.demo import demo_sites
    from consortium.run.plan import make_plan
    from consortium.run.simulation import simulate
    from policies.example import load_example

    store, rounds, liar = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
    plan = make_plan(store_path=store, rounds=rounds, seed=3, demo=True)
    if liar:
        import site_node.client_app

        # simulate() takes its ClientApp from here: the same engine, one lying node
        site_node.client_app.client_app_for = (
            lambda sites=None: lying_client_app(sites or [], liar))
    outcome = simulate(plan, demo_sites(plan, load_example("heart-disease").data))
    sys.stdout.write("\n" + json.dumps(asdict(outcome)) + "\n")
