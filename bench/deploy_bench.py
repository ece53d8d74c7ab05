"""Benchmark the deployed mode against the same run in simulation, side by side.

The same run (the embedded heart-disease example: its four hospitals, its policy, DP-SGD with
SecAgg+, ``--rounds`` rounds, ``--seed``) is run

- ``simulation``: ``consortium run`` (Flower's simulation engine, one process), and, for each
  launcher mode, deployed: a real SuperLink (TLS, node authentication) and four SuperNodes on
  127.0.0.1, submitted and followed as ``consortium submit`` does;
- ``warm``: SuperNodes in ``--isolation process`` with :mod:`site_node.deployment.launcher`
  (forks ClientApps from a process that has already imported torch and Opacus);
- ``cold``: Flower's default, a fresh ``flwr-clientapp`` process per message.

Per-round times are the run store's ``duration_s`` (the server's own clock per round: SecAgg+'s
four stages and the federated evaluation), in every mode. ``cpu_s`` is the CPU time of every
process the mode started (setup included), ``load`` the machine's load average before and
after. Prints one JSON document and writes it to OUT/deploy_bench.json, with a plot of the
per-round times beside it (matplotlib: ``pip install -e ".[bench]"``).

    python bench/deploy_bench.py [--rounds 3] [--modes simulation,warm,cold] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consortium.deployment.local import LocalDeployment
from consortium.home import HOME_ENV
from consortium.store.run_store import RunStore
from site_node.home import HOME_ENV as SITE_HOME_ENV


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _rounds(store: Path, run_id: str | None = None) -> tuple[list[Any], Any]:
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(run_id or rs.latest_run_id())
        return rs.rounds(run.run_id), run


def _summary(mode: str, rounds: int, recorded: list[Any], run: Any) -> dict[str, object]:
    per_round = [round(r.duration_s, 2) for r in recorded]
    return {
        "mode": mode,
        "rounds": rounds,
        "round_status": [str(r.status) for r in recorded],
        "round_s": per_round,
        "mean_round_s": round(sum(per_round) / max(1, len(per_round)), 2),
        "run_status": str(run.status),
        "stop_reason": run.stop_reason,
        "failures": [r.failure_reason for r in recorded if r.failure_reason],
    }


def simulate(rounds: int, seed: int) -> dict[str, object]:
    """The same run in Flower's simulation engine (``consortium run``, fresh homes)."""
    with tempfile.TemporaryDirectory(prefix="bench-simulation-") as tmp:
        env = {**os.environ, HOME_ENV: str(Path(tmp) / "home"),
               SITE_HOME_ENV: str(Path(tmp) / "sites")}
        store = Path(tmp) / "runs.sqlite"
        c0, t0 = _cpu(), time.monotonic()
        subprocess.run([sys.executable, "-m", "consortium", "run", "--seed", str(seed),
                        "--rounds", str(rounds), "--store", str(store)],
                       check=True, capture_output=True, text=True, env=env)
        wall, cpu = time.monotonic() - t0, _cpu() - c0
        recorded, run = _rounds(store)
    return {**_summary("simulation", rounds, recorded, run),
            "process_wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


#: Process kinds of a deployment, by a word of their command line (first match).
KINDS = (("paced_supernode", "supernodes"), ("flower-supernode", "supernodes"),
         ("deployment.launcher", "launchers and ClientApps"),
         ("flwr-clientapp", "launchers and ClientApps"),
         ("flower-superexec", "superlink side (SuperExec, ServerApp)"),
         ("flwr-serverapp", "superlink side (SuperExec, ServerApp)"),
         ("flower-superlink", "superlink"), ("guarded_superlink", "superlink"))


def _descendants_cpu() -> dict[str, float]:
    """CPU seconds of every process below this one, by kind, each counted with the children it
    has reaped (a finished ClientApp counts in its launcher, a finished ServerApp in SuperExec)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), cmd,
                                  sum(int(f) for f in fields[11:15]) / tick)
    below, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - below
        below |= frontier
    by_kind: dict[str, float] = {}
    for pid in below:
        ppid, cmd, cpu = table[pid]
        if not cmd.strip() and ppid in table:  # exited, not yet reaped: its parent's kind
            cmd = table[ppid][1]
        kind = next((k for word, k in KINDS if word in cmd), "other (flwr CLI)")
        by_kind[kind] = by_kind.get(kind, 0.0) + cpu
    return by_kind


def measure(mode: str, rounds: int, seed: int) -> dict[str, object]:
    """One deployment, one run; timings in seconds. ``run_cpu_s``: the CPU time every process
    of the deployment spent during the run (setup excluded), by kind; the driver's own (and its
    ``flwr`` CLI calls) under ``driver``."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        c0, t0 = _cpu(), time.monotonic()
        with LocalDeployment(Path(tmp)) as dep:
            dep.up(warm=(mode == "warm"))
            t1, before, own = time.monotonic(), _descendants_cpu(), _cpu()
            sub = dep.run(rounds, seed=seed)
            t2, after = time.monotonic(), _descendants_cpu()
            driver = _cpu() - own  # this process and the flwr CLI calls it reaped
            recorded, run = _rounds(sub.store, sub.run_id)
        cpu = _cpu() - c0
    during = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    during["driver (follow, flwr CLI)"] = round(driver, 2)
    total = sum(during.values())
    return {**_summary(mode, rounds, recorded, run), "setup_s": round(t1 - t0, 2),
            "run_wall_s": round(t2 - t1, 2), "cpu_s": round(cpu, 2),
            "run_cpu_s": round(total, 2), "run_cpu_s_per_round": round(total / rounds, 2),
            "run_cpu_by_kind": during}


def main() -> None:
    """Parse arguments, run every mode, print and save JSON (and a plot)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="simulation,warm",
                        help="comma-separated: simulation, warm, cold")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="deploy_bench")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = [simulate(args.rounds, args.seed) if mode == "simulation"
               else measure(mode, args.rounds, args.seed) for mode in args.modes.split(",")]
    doc = {
        "benchmark": "4-site DP-SGD + SecAgg+ (the embedded example): simulation vs deployed "
                     "over TLS with node authentication, one host",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "seed": args.seed,
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    with contextlib.suppress(ImportError):  # matplotlib is optional
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from plotting import plot_deploy_bench

        plot_deploy_bench(results, args.out / f"{args.name}.png")


if __name__ == "__main__":
    main()
