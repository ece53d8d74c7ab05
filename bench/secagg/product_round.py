"""The product's SecAgg+ round against a plain FedAvg round (Flower 1.42 simulation, Ray).

Every cell (sites × parameters × mode) is one ``flwr.simulation.run_simulation`` in a fresh
subprocess, with the product's pacing for every mode (``consortium.flower_compat.pace_simulation``
and the server's ``PacedGrid``, as ``consortium run`` has them) and Ray resources as the
product sizes them (two sites at a time on 2 cores). Modes:

- ``plain``: Flower's default fit workflow, FedAvg on float32;
- ``secagg-v1``: the product before mask version 2: Flower's ``SecAggPlusWorkflow`` and
  ``secaggplus_mod`` with the product's old ChaCha20 generator (8 keystream bytes a parameter,
  int64 uploads; ``fastpath.chacha20_masks_v1``) on both sides;
- ``secagg-v2``: the product now: ``consortium.flower_compat.SecAggPlus`` on the server and
  ``site_node.flower_compat.install_masking`` on the sites (mask version 2).

SecAgg+ uses the default policy's parameters (3 shares, threshold 2, max_weight 1000, clipping 8,
2^22 levels, modulus 2^32) and a strategy that takes the unmasked average as it is, as the
product's ``ConsortiumStrategy`` does. Sites do not train (``fit`` returns the global model +
0.001); the final model is checked against that (``aggregate_ok``).

Rounds: 1 warm-up (Ray start, imports), then the timed rounds (6 at 1M, 2 at 11M), then one
traced round (not timed)
in which ``tracemalloc`` records the peak traced allocation of the server's fit round and of
each site's masked-vector step. Every cell runs ``--repeat`` times (modes interleaved); the
figures are medians over all its timed rounds. Per cell: round wall time, CPU seconds of the
whole process tree per round, bytes each site uploads, peak RSS of the driver
(ServerApp) and of the Ray workers, the traced peaks.

Usage::

    python bench/secagg/product_round.py              # 10 sites × 1M and × 11M, twice each
    python bench/secagg/product_round.py --quick      # 10 sites × 1M only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CELLS = ((10, 1_000_000, ("plain", "secagg-v1", "secagg-v2")),
         (10, 11_000_000, ("plain", "secagg-v2")))
MAX_WEIGHT, CLIPPING, NUM_EXAMPLES, DELTA = 1000.0, 8.0, 100, 0.001


def _layout(n: int) -> list[tuple[int, ...]]:
    """A model-like split of n parameters: a big weight, a small weight, two biases."""
    small = min(1000, n // 10)
    return [(n - small - 20,), (small,), (10,), (10,)]


def _tree_cpu_s() -> float:
    import psutil

    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


STAGE_S: dict[str, float] = {}
STAGES = ("setup_stage", "share_keys_stage", "collect_masked_vectors_stage", "unmask_stage")


def _timed_stages(base: type) -> type:
    """``base`` with each SecAgg+ stage's wall time added to :data:`STAGE_S`."""

    def timed(name: str) -> Any:
        def stage(self: Any, *args: Any) -> bool:
            start = time.perf_counter()
            try:
                return bool(getattr(base, name)(self, *args))
            finally:
                STAGE_S[name] = STAGE_S.get(name, 0.0) + time.perf_counter() - start

        return stage

    return type(f"Timed{base.__name__}", (base,), {name: timed(name) for name in STAGES})


def _fit_workflow(mode: str, rounds: int, log: list[dict[str, Any]]) -> Any:
    """The timed fit workflow of ``mode`` (the last round traced instead of timed)."""
    import fastpath
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.default_workflows import default_fit_workflow

    from consortium import flower_compat as compat

    inner: Any = default_fit_workflow
    if mode != "plain":
        base = compat.SecAggPlus if mode == "secagg-v2" else SecAggPlusWorkflow
        if mode == "secagg-v1":
            import importlib

            importlib.import_module(compat.SERVER_MASK_MODULE).pseudo_rand_gen = (
                fastpath.chacha20_masks_v1)
        inner = _timed_stages(base)(
            num_shares=3, reconstruction_threshold=2, max_weight=MAX_WEIGHT,
            clipping_range=CLIPPING, quantization_range=2**22, modulus_range=2**32, timeout=600)

    def fit_round(grid: Any, context: Any) -> None:
        traced = len(log) == rounds - 1
        if traced:
            tracemalloc.start()
        cpu, start = _tree_cpu_s(), time.perf_counter()
        inner(grid, context)
        rec = {"wall_s": time.perf_counter() - start, "cpu_s": _tree_cpu_s() - cpu,
               "loadavg_1m": os.getloadavg()[0], "traced": traced,
               "stages": dict(STAGE_S)}
        STAGE_S.clear()
        if traced:
            rec["server_peak_traced_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        log.append(rec)

    return fit_round


def run_cell(sites: int, params: int, mode: str, rounds: int) -> dict[str, Any]:
    """One simulation (in this process); returns the cell's record."""
    import logging

    import fastpath
    import numpy as np
    import product_client
    from flwr.app import Context
    from flwr.client import ClientApp
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.simulation import run_simulation
    from simclient import client_fn

    from consortium import flower_compat as compat
    from consortium.run import ray_session
    from consortium.run.grid import PacedGrid

    logging.getLogger("flwr").setLevel(logging.WARNING)
    compat.pace_simulation()
    if os.environ.get("BENCH_GRID_FIRST_S"):  # experiment: the server's first poll interval
        from consortium.run import grid as grid_module

        grid_module.FIRST_INTERVAL_S = float(os.environ["BENCH_GRID_FIRST_S"])
    rng = np.random.default_rng(0)
    initial = [(0.01 * rng.standard_normal(s)).astype(np.float32) for s in _layout(params)]
    log: list[dict[str, Any]] = []
    fit_round = _fit_workflow(mode, rounds, log)
    strategy_cls: Any = FedAvg if mode == "plain" else type(
        "Shared", (fastpath.SharedResultFedAvgMixin, FedAvg), {})
    strategy = strategy_cls(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=sites,
                            min_evaluate_clients=0, min_available_clients=sites,
                            initial_parameters=ndarrays_to_parameters(initial))
    final: dict[str, Any] = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Any, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds),
                               strategy=strategy)
        DefaultWorkflow(fit_workflow=fit_round)(PacedGrid(grid), legacy)
        arrays = parameters_to_ndarrays(arrayrecord_to_parameters(
            legacy.state.array_records[MAIN_PARAMS_RECORD], True))
        final["dtype"] = str(arrays[0].dtype)
        final["max_abs_err"] = max(float(np.max(np.abs(a - (i + rounds * DELTA))))
                                   for a, i in zip(arrays, initial, strict=True))

    fd, probe_path = tempfile.mkstemp(prefix="product_round_", suffix=".jsonl")
    os.close(fd)
    mods: list[Any] = [product_client.ProbeMod(mode, probe_path, str(rounds))]
    if mode != "plain":
        mods.append(secaggplus_mod)
    started = time.perf_counter()
    run_simulation(server_app=app, client_app=ClientApp(client_fn=client_fn, mods=mods),
                   num_supernodes=sites, backend_config=ray_session.backend_config(sites))
    with open(probe_path) as fh:
        probe = [json.loads(line) for line in fh if line.strip()]
    os.unlink(probe_path)
    rec = summarise(sites, params, mode, rounds, log, probe, final)
    rec["cell_s"] = time.perf_counter() - started
    rec["driver_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return rec


def summarise(sites: int, params: int, mode: str, rounds: int, log: list[dict[str, Any]],
              probe: list[dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    """The cell's record from the server's round log and the sites' probe lines."""
    timed = [r for r in log[1:] if not r["traced"]]
    timed_rounds = {str(i) for i in range(2, rounds)}
    per_site: dict[tuple[int, str], dict[str, float]] = {}
    for line in probe:
        if line["round"] in timed_rounds:
            acc = per_site.setdefault((line["node"], line["round"]), {
                "upload_bytes": 0, "masking_s": 0.0, "masking_cpu_s": 0.0})
            for key in acc:
                acc[key] += line.get(key, 0)
    traced = [r for r in log if r["traced"]]
    handle: dict[str, list[float]] = {}
    for line in probe:
        if line["round"] in timed_rounds:
            handle.setdefault(line["stage"], []).append(line["handle_s"])
    stages = {name.removesuffix("_stage"): statistics.median(r["stages"].get(name, 0.0)
                                                             for r in timed)
              for name in STAGES} if mode != "plain" else None
    peaks = [ln["masking_peak_bytes"] for ln in probe if "masking_peak_bytes" in ln]
    step = 2 * CLIPPING / 2**22
    tol = rounds * (1e-6 if mode == "plain" else 2 * step * MAX_WEIGHT / NUM_EXAMPLES)
    err = final.get("max_abs_err")
    return {
        "sites": sites, "params": params, "mode": mode, "rounds": rounds,
        "timed_rounds": len(timed), "round_s": [r["wall_s"] for r in timed],
        "round_median_s": statistics.median(r["wall_s"] for r in timed),
        "round_cpu_median_s": statistics.median(r["cpu_s"] for r in timed),
        "loadavg_1m": [r["loadavg_1m"] for r in timed], "server_stage_s": stages,
        "site_handle_s": {k: statistics.median(v) for k, v in handle.items()},
        "upload_bytes_per_site": statistics.median(v["upload_bytes"] for v in per_site.values()),
        "site_masking_s": statistics.median(v["masking_s"] for v in per_site.values()),
        "site_masking_cpu_s": statistics.median(v["masking_cpu_s"] for v in per_site.values()),
        "site_masking_peak_traced_bytes": statistics.median(peaks) if peaks else None,
        "server_round_peak_traced_bytes": traced[0]["server_peak_traced_bytes"] if traced
        else None,
        "worker_peak_rss_bytes": max((ln["maxrss_bytes"] for ln in probe), default=0),
        "global_model_dtype": final.get("dtype"), "agg_max_abs_err": err,
        "aggregate_ok": err is not None and err <= tol,
    }


def _spawn(sites: int, params: int, mode: str, rounds: int) -> dict[str, Any]:
    env = dict(os.environ)
    root = str(HERE.parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), root, env.get("PYTHONPATH", "")])
    env.update(RAY_DEDUP_LOGS="0", RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
               FLWR_TELEMETRY_ENABLED="0", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cell",
           f"{sites}:{params}:{mode}:{rounds}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"sites": sites, "params": params, "mode": mode,
                "error": f"exit {proc.returncode}: {tail}"[:600]}
    return dict(json.loads(lines[-1]))


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from repeated runs of a cell: medians over all their timed rounds."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    rec = dict(ok[0])
    rec["round_s"] = [t for r in ok for t in r["round_s"]]
    rec["round_median_s"] = statistics.median(rec["round_s"])
    rec["round_min_s"] = min(rec["round_s"])
    rec["round_cpu_median_s"] = statistics.median(r["round_cpu_median_s"] for r in ok)
    rec["loadavg_1m"] = [x for r in ok for x in r["loadavg_1m"]]
    for key in ("site_masking_s", "site_masking_cpu_s"):
        rec[key] = statistics.median(r[key] for r in ok)
    for key in ("driver_peak_rss_bytes", "worker_peak_rss_bytes", "agg_max_abs_err",
                "server_round_peak_traced_bytes", "site_masking_peak_traced_bytes"):
        values = [r[key] for r in ok if r.get(key) is not None]
        rec[key] = max(values) if values else None
    rec["aggregate_ok"] = all(r["aggregate_ok"] for r in ok) and len(ok) == len(runs)
    rec["runs"] = len(runs)
    return rec


def _ratios(records: list[dict[str, Any]]) -> None:
    plain = {r["params"]: r for r in records if r["mode"] == "plain" and "error" not in r}
    for r in records:
        p = plain.get(r["params"])
        if p is not None and r["mode"] != "plain" and "error" not in r:
            r["ratio_vs_plain"] = r["round_median_s"] / p["round_median_s"]
            r["cpu_ratio_vs_plain"] = r["round_cpu_median_s"] / p["round_cpu_median_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="10 sites × 1M only")
    parser.add_argument("--repeat", type=int, default=2, help="runs of every cell (default 2)")
    parser.add_argument("--tag", default="product_round")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.cell:
        sites, params, mode, rounds = args.cell.split(":")
        print(json.dumps(run_cell(int(sites), int(params), mode, int(rounds))), flush=True)
        return
    started, runs = time.time(), []
    for repeat in range(args.repeat):  # the modes interleaved, so load hits them alike
        for sites, params, modes in CELLS[:1] if args.quick else CELLS:
            for mode in modes:
                rounds = 8 if params <= 2_000_000 else 4  # warm-up + timed + traced
                rec = {**_spawn(sites, params, mode, rounds), "repeat": repeat}
                print(json.dumps(rec), flush=True)
                runs.append(rec)
    records = [_merge([r for r in runs if (r["params"], r["mode"]) == key])
               for key in dict.fromkeys((r["params"], r["mode"]) for r in runs)]
    _ratios(records)
    import flwr

    result = {"benchmark": "product_round", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "wall_s": time.time() - started,
              "machine": {"cpu_count": os.cpu_count(), "flwr": flwr.__version__, "gpu": None},
              "results": records, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    sys.path.insert(0, str(HERE.parent))
    from plotting import plot_product_round

    plot_product_round(result, args.out / f"{args.tag}.png")


if __name__ == "__main__":
    main()
