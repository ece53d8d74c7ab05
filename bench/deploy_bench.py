"""Benchmark the deployed mode: wall time per round of a 4-site DP-SGD + SecAgg+ run.

Starts a real SuperLink (TLS, node authentication) and four SuperNodes on 127.0.0.1 for each
launcher mode, runs ROUNDS rounds, and prints one JSON document:

- ``warm``: SuperNodes in ``--isolation process`` with :mod:`site_node.deployment.launcher` (forks
  ClientApps from a process that has already imported torch and Opacus);
- ``cold``: Flower's default, a fresh ``flwr-clientapp`` process per message.

Per-round times are the run store's ``duration_s`` (the server's own clock per round: SecAgg+'s
four stages and the federated evaluation).

    python bench/deploy_bench.py [--rounds 2] [--modes warm,cold]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consortium.deployment.local import LocalDeployment
from consortium.store.run_store import RunStore


def measure(mode: str, rounds: int) -> dict[str, object]:
    """One deployment, one run; timings in seconds."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        t0 = time.monotonic()
        with LocalDeployment(Path(tmp)) as dep:
            dep.up(warm=(mode == "warm"))
            t1 = time.monotonic()
            sub = dep.run(rounds)
            t2 = time.monotonic()
            with RunStore(sub.store, readonly=True) as store:
                recorded = store.rounds(sub.run_id)
                run = store.get_run(sub.run_id)
        per_round = [round(r.duration_s, 2) for r in recorded]
        return {
            "mode": mode,
            "rounds": rounds,
            "round_status": [r.status for r in recorded],
            "round_s": per_round,
            "mean_round_s": round(sum(per_round) / max(1, len(per_round)), 2),
            "setup_s": round(t1 - t0, 2),
            "run_wall_s": round(t2 - t1, 2),
            "run_status": run.status,
            "stop_reason": run.stop_reason,
            "failures": [r.failure_reason for r in recorded if r.failure_reason],
        }


def main() -> None:
    """Parse arguments, run every mode, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="warm,cold")
    args = parser.parse_args()
    results = [measure(mode, args.rounds) for mode in args.modes.split(",")]
    print(json.dumps({
        "benchmark": "deployed 4-site DP-SGD + SecAgg+ over TLS with node authentication",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
