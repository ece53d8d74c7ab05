"""Per-round cost of SecAgg+ against plain FedAvg in Flower's simulation, by sites and size.

Every cell (sites K × parameters N × mode) is one ``flwr.simulation.run_simulation`` call (Ray
backend, one virtual SuperNode per site) in a fresh subprocess, with R rounds: round 1 is the
warm-up (Ray actors start, imports), rounds 2..R are measured; Ray start-up (from the call to
the ServerApp's first line) is reported separately. Modes:

- ``plain``: Flower's ``DefaultWorkflow`` with its default fit workflow (FedAvg, float32);
- ``secagg-flower``: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` and
  ``ClientApp(mods=[secaggplus_mod])``, with Flower's mask generator (Mersenne Twister);
- ``secagg-chacha20``: the same with the product's ChaCha20 generator installed on both sides.

Sites do not train: ``fit`` returns the global parameters + 0.001 (a synthetic update of N
float32), because this measures aggregation cost. The server checks that the aggregate equals
that update (SecAgg+ quantisation error only) so a cell cannot pass by halting.

Measured per cell: per-round wall time (the fit workflow, median over measured rounds), the
server's time per SecAgg+ stage, each site's masking time (``_collect_masked_vectors`` in the
client mod: decrypt shares, quantise, add masks, mod, serialise) and mask-generation time,
bytes each site uploads (measured from the reply messages), peak memory (driver and workers).

Usage::

    python bench/secagg/secagg_scaling.py --quick     # 4/10 sites × 100k/1M (~6 min)
    python bench/secagg/secagg_scaling.py             # 4/10/25/50 × 100k/1M/10M, see --help
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("plain", "secagg-flower", "secagg-chacha20")
SITES = (4, 10, 25, 50)
PARAMS = (100_000, 1_000_000, 10_000_000)
QUICK_SITES = (4, 10)
QUICK_PARAMS = (100_000, 1_000_000)
CLIPPING_RANGE = 8.0
MAX_WEIGHT = 1000.0
NUM_EXAMPLES = 100  # simclient.NUM_EXAMPLES (kept here so the parent needs no flwr import)


def _layout(n: int) -> list[tuple[int, ...]]:
    """A model-like split of n parameters: one big weight, a small weight, two biases."""
    small = min(1000, n // 10)
    return [(n - small - 20,), (small,), (10,), (10,)]


# ----------------------------------------------------------------------------- cell (child)
def _tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants
    (Ray's GCS, raylet and worker processes): a cost that other jobs on the machine do not
    inflate, unlike wall time."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _fast_add_messages_to_queue(state: Any, queue: Any, nodes_mapping: Any, f_stop: Any) -> None:
    """Flower's ``vce_api.add_messages_to_queue`` with a 10 ms instead of 100 ms poll."""
    while not f_stop.is_set():
        for node_id in nodes_mapping:
            for msg in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(msg)
        f_stop.wait(0.01)


def run_cell(
    sites: int,
    params: int,
    mode: str,
    rounds: int,
    num_shares: float,
    threshold: float,
    timeout: float,
    pull_interval: float | None,
    fixes: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Run one simulation; returns the cell's record. Runs in its own process."""
    import logging

    import fastpath
    import numpy as np
    import simclient
    from flwr.app import Context
    from flwr.client import ClientApp
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.server.workflow.default_workflows import default_fit_workflow
    from flwr.serverapp import Grid
    from flwr.simulation import run_simulation

    flwr_log = logging.getLogger("flwr")
    flwr_log.setLevel(logging.WARNING)
    workflow_module: Any = importlib.import_module(
        "flwr.server.workflow.secure_aggregation.secaggplus_workflow"
    )
    generator = None if mode == "plain" else mode.split("-", 1)[1]
    if generator == "chacha20" and "chacha32" in fixes:
        generator = "chacha20-32"
    if "vcepoll" in fixes:  # simulation engine only: poll the link state every 10 ms, not 100
        vce_api: Any = importlib.import_module("flwr.server.superlink.fleet.vce.vce_api")
        vce_api.add_messages_to_queue = _fast_add_messages_to_queue
    server_counters: dict[str, float] = {"mask_gen_s": 0.0, "mask_gen_calls": 0}
    if generator is not None:
        workflow_module.pseudo_rand_gen = simclient._timed_generator(
            simclient.GENERATORS[generator], server_counters
        )

    rng = np.random.default_rng(0)
    initial = [(0.01 * rng.standard_normal(s)).astype(np.float32) for s in _layout(params)]
    # every round adds the sites' update (+0.001) to the global parameters
    expected = [a + rounds * simclient.UPDATE_DELTA for a in initial]
    rounds_log: list[dict[str, Any]] = []
    stage_s: dict[str, float] = {}
    stage_windows: list[tuple[str, float, float]] = []  # (stage, wall start, wall end)
    agg_s: list[float] = []
    marks: dict[str, float] = {}

    mixins: list[type] = []
    if "f32" in fixes:
        mixins.append(fastpath.Float32ParametersMixin)
    if "fedavg" in fixes:
        mixins.append(fastpath.SharedResultFedAvgMixin)
    base_strategy: Any = type("BaseStrategy", (*mixins, FedAvg), {}) if mixins else FedAvg

    class TimedFedAvg(base_strategy):  # type: ignore[misc, valid-type]
        def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            out = super().aggregate_fit(server_round, results, failures)
            agg_s.append(time.perf_counter() - start)
            return out

    class TimedSecAgg(SecAggPlusWorkflow):
        def _timed(self, name: str, fn: Any, *args: Any) -> bool:
            start, wall = time.perf_counter(), time.time()
            ok = bool(fn(*args))
            stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - start
            stage_windows.append((name, wall, time.time()))
            stage_s[f"{name}_ok"] = stage_s.get(f"{name}_ok", 0) + int(ok)
            return ok

        def setup_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
            return self._timed("setup", super().setup_stage, grid, context, state)

        def share_keys_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
            return self._timed("share_keys", super().share_keys_stage, grid, context, state)

        def collect_masked_vectors_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
            return self._timed(
                "collect_masked_vectors",
                super().collect_masked_vectors_stage,
                grid,
                context,
                state,
            )

        def unmask_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
            return self._timed("unmask", super().unmask_stage, grid, context, state)

    inner: Any
    if mode == "plain":
        inner = default_fit_workflow
    else:
        inner = TimedSecAgg(
            num_shares=num_shares if num_shares < 1 else int(num_shares),
            reconstruction_threshold=threshold if threshold < 1 else int(threshold),
            max_weight=MAX_WEIGHT,
            clipping_range=CLIPPING_RANGE,
            timeout=timeout,
        )

    def fit_round(grid: Grid, context: Context) -> None:
        before = dict(stage_s)
        del stage_windows[:]
        cpu_before = _tree_cpu_s()
        start, wall = time.perf_counter(), time.time()
        inner(grid, context)
        elapsed = time.perf_counter() - start
        cpu_used = _tree_cpu_s() - cpu_before
        windows = list(stage_windows) or [("fit", wall, time.time())]
        rounds_log.append(
            {
                "wall_s": elapsed,
                "cpu_s": cpu_used,
                "loadavg_1m": os.getloadavg()[0],
                "t_start": wall,
                "t_end": time.time(),
                "windows": windows,
                "stages": {k: v - before.get(k, 0.0) for k, v in stage_s.items()},
            }
        )

    strategy = TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=sites,
        min_evaluate_clients=0,
        min_available_clients=sites,
        initial_parameters=ndarrays_to_parameters(initial),
    )
    final: dict[str, Any] = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        marks["main"] = time.perf_counter()
        if pull_interval is not None and hasattr(grid, "pull_interval"):
            grid.pull_interval = pull_interval
        if "poll" in fixes:
            grid = fastpath.FastPollGrid(grid, 0.01)  # type: ignore[assignment]
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy
        )
        DefaultWorkflow(fit_workflow=fit_round)(grid, legacy)
        arrays = parameters_to_ndarrays(
            compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], True)
        )
        final["max_abs_err"] = max(
            float(np.max(np.abs(a - e))) for a, e in zip(arrays, expected, strict=True)
        )

    log_fd, log_path = tempfile.mkstemp(prefix="secagg_probe_", suffix=".jsonl")
    os.close(log_fd)
    mods: list[Any] = [simclient.ProbeMod(generator, log_path, "quantize" in fixes)]
    if generator is not None:
        mods.append(secaggplus_mod)
    client_app = ClientApp(client_fn=simclient.client_fn, mods=mods)
    cpus = os.cpu_count() or 2
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }
    t0, wall0 = time.perf_counter(), time.time()
    run_simulation(
        server_app=app,
        client_app=client_app,
        num_supernodes=sites,
        backend_config=backend,  # type: ignore[arg-type]
    )
    total_s = time.perf_counter() - t0
    with open(log_path) as fh:
        probe = [json.loads(line) for line in fh if line.strip()]
    os.unlink(log_path)
    return summarise_cell(
        sites=sites,
        params=params,
        mode=mode,
        rounds=rounds,
        rounds_log=rounds_log,
        probe=probe,
        startup_s=marks.get("main", t0) - t0,
        total_s=total_s,
        run_started=wall0,
        agg_s=agg_s,
        server_counters=server_counters,
        final=final,
        driver_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        settings={
            "num_shares": num_shares,
            "threshold": threshold,
            "timeout_s": timeout,
            "pull_interval": pull_interval,
            "fixes": sorted(fixes),
        },
    )


def summarise_cell(
    *,
    sites: int,
    params: int,
    mode: str,
    rounds: int,
    rounds_log: list[dict[str, Any]],
    probe: list[dict[str, Any]],
    startup_s: float,
    total_s: float,
    run_started: float,
    agg_s: list[float],
    server_counters: dict[str, float],
    final: dict[str, Any],
    driver_peak: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """One record per cell from the server's round log and the sites' probe lines."""
    measured = rounds_log[1:] if len(rounds_log) > 1 else rounds_log
    walls = [r["wall_s"] for r in measured]
    cpus = [r["cpu_s"] for r in measured if "cpu_s" in r]
    rec: dict[str, Any] = {
        "sites": sites,
        "params": params,
        "mode": mode,
        "rounds": rounds,
        "rounds_done": len(rounds_log),
        "startup_s": startup_s,
        "total_s": total_s,
        "warmup_round_s": rounds_log[0]["wall_s"] if rounds_log else None,
        "round_s": walls,
        "round_median_s": statistics.median(walls) if walls else None,
        "round_cpu_s": cpus,
        "round_cpu_median_s": statistics.median(cpus) if cpus else None,
        "round_loadavg_1m": [r.get("loadavg_1m") for r in measured],
        "driver_peak_rss_bytes": driver_peak,
        **settings,
    }
    measured_rounds = {str(i + 1) for i in range(1, len(rounds_log))} or {"1"}
    per_site: dict[tuple[int, str], dict[str, float]] = {}
    for line in probe:
        if line["round"] not in measured_rounds:
            continue
        key = (line["node"], line["round"])
        acc = per_site.setdefault(
            key,
            {
                "handle_s": 0.0,
                "upload_bytes": 0,
                "masked_bytes": 0,
                "masking_s": 0.0,
                "masking_cpu_s": 0.0,
                "mask_gen_s": 0.0,
                "fit_s": 0.0,
            },
        )
        for k in acc:
            acc[k] += line.get(k, 0)
    if per_site:

        def med(key: str) -> float:
            return statistics.median(v[key] for v in per_site.values())

        rec.update(
            site_busy_s=med("handle_s"),
            site_fit_s=med("fit_s"),
            site_masking_s=med("masking_s"),
            site_masking_cpu_s=med("masking_cpu_s"),
            site_mask_gen_s=med("mask_gen_s"),
            site_masking_max_s=max(v["masking_s"] for v in per_site.values()),
            upload_bytes_per_site=med("upload_bytes"),
            masked_vector_bytes_per_site=med("masked_bytes"),
        )
        if mode == "plain":
            rec["masked_vector_bytes_per_site"] = None
        if rec["round_median_s"]:
            rec["mask_share"] = rec["site_masking_s"] / rec["round_median_s"]
    if probe:
        # Ray start-up: from the run_simulation call to the first site's reply (Ray init,
        # actor processes, their imports); the warm-up round contains it
        rec["ray_startup_s"] = min(ln["t_end"] for ln in probe) - run_started
        rec["stage_breakdown"] = stage_breakdown(measured, probe)
    rec["worker_peak_rss_bytes"] = max((ln.get("maxrss_bytes", 0) for ln in probe), default=0)
    stages = [r["stages"] for r in measured if r.get("stages")]
    if stages:
        rec["server_stage_s"] = {
            k: statistics.median(s.get(k, 0.0) for s in stages)
            for k in ("setup", "share_keys", "collect_masked_vectors", "unmask")
        }
        rec["halted_rounds"] = sum(1 for s in stages if not s.get("unmask_ok"))
    rec["server_aggregate_fit_s"] = statistics.median(agg_s[1:] or agg_s) if agg_s else None
    calls = server_counters.get("mask_gen_calls", 0)
    if calls:
        rec["server_mask_gen_s_per_round"] = server_counters["mask_gen_s"] / max(len(agg_s), 1)
    rec["agg_max_abs_err"] = final.get("max_abs_err")
    # The aggregate must be the sites' update: FedAvg to float32 rounding; SecAgg+ within its
    # quantisation error (stochastic rounding: < 1 step of 2·clip/2^22 per site, divided by
    # the weight ratio num_examples/max_weight), accumulated over the rounds.
    step = 2 * CLIPPING_RANGE / 2**22
    ratio = NUM_EXAMPLES / MAX_WEIGHT
    tol = rounds * (1e-6 if mode == "plain" else 2 * step / ratio)
    rec["aggregate_ok"] = rec["agg_max_abs_err"] is not None and rec["agg_max_abs_err"] <= tol
    return rec


def stage_breakdown(
    measured: list[dict[str, Any]], probe: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Where each stage's wall time goes (medians over the measured rounds).

    ``dispatch_s``: from the server sending the stage to the first site starting on it
    (message polling, Ray scheduling); ``client_span_s``: first site start to last site end
    (2 Ray workers share the sites); ``client_sum_s``: the sites' handling times added up;
    ``tail_s``: last site end to the server finishing the stage (reply polling, server work).
    """
    rows: dict[str, list[dict[str, float]]] = {}
    for rnd in measured:
        round_no = None
        for name, w0, w1 in rnd.get("windows", []):
            probe_stage = "train" if name == "fit" else name
            lines = [
                ln
                for ln in probe
                if ln["stage"] == probe_stage
                and w0 <= ln["t_end"] - ln["handle_s"]
                and ln["t_end"] <= w1 + 0.05
            ]
            if round_no is None and lines:
                round_no = lines[0]["round"]
            lines = [ln for ln in lines if ln["round"] == round_no]
            if not lines:
                continue
            first = min(ln["t_end"] - ln["handle_s"] for ln in lines)
            last = max(ln["t_end"] for ln in lines)
            rows.setdefault(name, []).append(
                {
                    "wall_s": w1 - w0,
                    "dispatch_s": first - w0,
                    "client_span_s": last - first,
                    "client_sum_s": sum(ln["handle_s"] for ln in lines),
                    "tail_s": w1 - last,
                }
            )
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()
    }


# ----------------------------------------------------------------------------- parent
def _spawn_cell(
    args: argparse.Namespace, sites: int, params: int, mode: str, fixes: str | None = None
) -> dict[str, Any]:
    fixes = args.fixes if fixes is None else fixes
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--cell",
        f"{sites}:{params}:{mode}",
        "--rounds",
        str(args.rounds if sites * params <= 10_000_000 else min(args.rounds, 3)),
        "--num-shares",
        str(args.num_shares),
        "--threshold",
        str(args.threshold),
        "--stage-timeout",
        str(args.stage_timeout),
    ]
    if args.pull_interval is not None:
        cmd += ["--pull-interval", str(args.pull_interval)]
    if fixes:
        cmd += ["--fixes", fixes]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    base = {"sites": sites, "params": params, "mode": mode}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.cell_timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {**base, "error": f"cell timeout after {args.cell_timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
        return {**base, "error": f"exit {proc.returncode}: {' | '.join(tail)}"[:500]}
    rec: dict[str, Any] = json.loads(lines[-1])
    rec["process_s"] = time.perf_counter() - start
    rec["loadavg_1m_before"] = load_before
    return rec


def _ratios(records: list[dict[str, Any]]) -> None:
    plain = {(r["sites"], r["params"]): r for r in records if r["mode"] == "plain"}
    for r in records:
        p = plain.get((r["sites"], r["params"]))
        if p and p.get("round_median_s") and r.get("round_median_s") and r["mode"] != "plain":
            r["ratio_vs_plain"] = r["round_median_s"] / p["round_median_s"]
            if p.get("round_cpu_median_s") and r.get("round_cpu_median_s"):
                r["cpu_ratio_vs_plain"] = r["round_cpu_median_s"] / p["round_cpu_median_s"]


#: (mode, cumulative fixes) for --fix-ablation.
ABLATION: tuple[tuple[str, str], ...] = (
    ("plain", ""),
    ("secagg-flower", ""),
    ("secagg-chacha20", ""),
    ("secagg-chacha20", "chacha32"),
    ("secagg-chacha20", "chacha32,quantize"),
    ("secagg-chacha20", "chacha32,quantize,fedavg"),
    ("plain", "poll"),
    ("secagg-chacha20", "chacha32,quantize,fedavg,poll"),
    ("plain", "poll,vcepoll"),
    ("secagg-chacha20", "chacha32,quantize,fedavg,poll,vcepoll"),
    ("secagg-chacha20", "chacha32,quantize,fedavg,f32,poll,vcepoll"),
)


def _ablation_ratios(records: list[dict[str, Any]]) -> None:
    """Each SecAgg+ variant against plain FedAvg under the same polling fixes."""

    def polling(rec: dict[str, Any]) -> tuple[str, ...]:
        return tuple(f for f in rec.get("fixes", []) if f in ("poll", "vcepoll"))

    plain = {polling(r): r for r in records if r["mode"] == "plain" and "error" not in r}
    for r in records:
        p = plain.get(polling(r))
        if r["mode"] == "plain" or p is None or not r.get("round_median_s"):
            continue
        r["ratio_vs_plain"] = r["round_median_s"] / p["round_median_s"]
        if p.get("round_cpu_median_s") and r.get("round_cpu_median_s"):
            r["cpu_ratio_vs_plain"] = r["round_cpu_median_s"] / p["round_cpu_median_s"]


def markdown_table(result: dict[str, Any]) -> str:
    """One row per cell: round time, CPU cost, ratios, masking, bytes, checks."""
    lines = [
        "| sites | params | mode | round median (min) s | CPU s/round | × plain (wall) "
        "| × plain (CPU) | site masking s (CPU s) | masking share | upload/site MB "
        "| aggregate ok | load 1m |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in result["results"]:
        label = r.get("variant", r["mode"])
        if r.get("skipped") or r.get("error"):
            why = r.get("skipped") or r.get("error")
            lines.append(f"| {r['sites']} | {r['params']:,} | {label} | {why} |||||||||")
            continue
        walls = r.get("round_s") or [float("nan")]
        loads = [x for x in r.get("round_loadavg_1m") or [] if x is not None]

        def fmt(key: str, spec: str = ".2f", suffix: str = "", r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "–" if v is None else f"{v:{spec}}{suffix}"

        masking = (
            "–"
            if r["mode"] == "plain"
            else (f"{r.get('site_masking_s', 0):.3f} ({r.get('site_masking_cpu_s', 0):.3f})")
        )
        share = "–" if r["mode"] == "plain" else fmt("mask_share", ".1%")
        lines.append(
            f"| {r['sites']} | {r['params']:,} | {label} "
            f"| {r['round_median_s']:.2f} ({min(walls):.2f}) | {fmt('round_cpu_median_s')} "
            f"| {fmt('ratio_vs_plain', '.2f', '×')} | {fmt('cpu_ratio_vs_plain', '.2f', '×')} "
            f"| {masking} | {share} | {r.get('upload_bytes_per_site', 0) / 1e6:.2f} "
            f"| {'yes' if r.get('aggregate_ok') else '**no**'} "
            f"| {max(loads) if loads else float('nan'):.1f} |"
        )
    return "\n".join(lines)


def _skip_reason(sites: int, params: int, max_site_params: float) -> str | None:
    if sites * params > max_site_params:
        return (
            f"skipped: {sites} sites × {params:,} parameters = {sites * params:.1e} "
            f"site-parameters per round > --max-site-params {max_site_params:.1e} "
            "(time budget of the full run on 2 cores, see README)"
        )
    return None


def _machine() -> dict[str, Any]:
    import flwr

    return {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "flwr": flwr.__version__,
        "gpu": None,
    }


def merge_results(paths: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """One result from earlier result JSONs / printed JSON lines; ratios recomputed."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    sources = []
    for path in paths:
        text = path.read_text()
        if path.suffix == ".jsonl":
            recs = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
            sources.append({"source": str(path)})
        else:
            res = json.loads(text)
            recs = res["results"]
            sources.append(
                {
                    "source": str(path),
                    "created": res.get("created"),
                    "settings": res.get("settings"),
                }
            )
        for r in recs:
            rows[(r["sites"], r["params"], r.get("variant", r["mode"]))] = r
    records = list(rows.values())
    if any(r.get("variant") for r in records):
        _ablation_ratios(records)
    else:
        _ratios(records)
    return {
        "benchmark": "secagg_scaling",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "settings": {
            "merged_from": sources,
            "num_shares": args.num_shares,
            "threshold": args.threshold,
        },
        "results": records,
    }


def _write(result: dict[str, Any], args: argparse.Namespace, *, ablation: bool) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{args.tag}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.no_plot:
        sys.path.insert(0, str(HERE.parent))
        from plotting import plot_secagg, plot_secagg_ablation

        plot = plot_secagg_ablation if ablation else plot_secagg
        plot(result, args.out / f"{args.tag}.png")
    print(f"# wrote {out} ({result.get('wall_s', 0):.0f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4/10 sites × 100k/1M parameters")
    p.add_argument("--sites", default=None, help="comma list (default 4,10,25,50)")
    p.add_argument("--params", default=None, help="comma list (default 1e5,1e6,1e7)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="1 warm-up + measured rounds (default 4; at most 3 when sites × params > 1e7)",
    )
    p.add_argument(
        "--num-shares",
        type=float,
        default=3,
        help="SecAgg+ shares: odd int >= 3 or a fraction (product default 3)",
    )
    p.add_argument("--threshold", type=float, default=2, help="reconstruction threshold")
    p.add_argument("--stage-timeout", type=float, default=600.0, help="SecAgg+ stage timeout")
    p.add_argument(
        "--pull-interval",
        type=float,
        default=None,
        help="set the simulation grid's pull interval (Flower default 0.1 s)",
    )
    p.add_argument(
        "--fixes",
        default="",
        help="prototype fixes, comma list of: poll (server polls every 10 ms), "
        "quantize (fused quantiser), chacha32 (32-bit ChaCha20 masks), "
        "fedavg (skip re-averaging identical SecAgg+ results), f32 (cast the aggregate back "
        "to float32), vcepoll "
        "(simulation engine polls every 10 ms; simulation only)",
    )
    p.add_argument(
        "--fix-ablation",
        action="store_true",
        help="run the cumulative prototype fixes (see ABLATION) at the first --sites/--params "
        "cell (default 10 sites x 1M); writes <tag>.json",
    )
    p.add_argument(
        "--max-site-params",
        type=float,
        default=1.0e9,
        help="skip cells with sites × params above this",
    )
    p.add_argument("--cell-timeout", type=float, default=1200.0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--tag", default="secagg_scaling", help="output file stem")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--table", type=Path, help="print a result JSON as Markdown; runs nothing")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="build <out>/<tag>.json (+ plot) from result JSONs and/or the JSON lines runs "
        "printed (.jsonl; later records win per sites × params × variant); runs nothing",
    )
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return 0
    if args.merge:
        merged = merge_results(args.merge, args)
        _write(merged, args, ablation=any(r.get("variant") for r in merged["results"]))
        return 0
    if args.cell:
        sites_s, params_s, mode = args.cell.split(":")
        rec = run_cell(
            int(sites_s),
            int(params_s),
            mode,
            args.rounds,
            args.num_shares,
            args.threshold,
            args.stage_timeout,
            args.pull_interval,
            frozenset(f for f in args.fixes.split(",") if f),
        )
        print(json.dumps(rec), flush=True)
        return 0

    sites = (
        [int(s) for s in args.sites.split(",")]
        if args.sites
        else (list(QUICK_SITES) if args.quick else list(SITES))
    )
    params = (
        [int(float(s)) for s in args.params.split(",")]
        if args.params
        else (list(QUICK_PARAMS) if args.quick else list(PARAMS))
    )
    if args.fix_ablation:
        sites = sites if args.sites else [10]
        params = params if args.params else [1_000_000]
    modes = [m for m in args.modes.split(",") if m]
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    if args.fix_ablation:
        # cumulative prototype fixes at one cell, plain measured under the same polling
        k, n = sites[0], params[0]
        for mode, fixes in ABLATION:
            rec = _spawn_cell(args, k, n, mode, fixes)
            rec["variant"] = f"{mode} +{fixes}" if fixes else mode
            records.append(rec)
            print(json.dumps(rec), flush=True)
        _ablation_ratios(records)
    for n in [] if args.fix_ablation else params:
        for k in sites:
            for mode in modes:
                reason = _skip_reason(k, n, args.max_site_params)
                rec = (
                    {"sites": k, "params": n, "mode": mode, "skipped": reason}
                    if reason
                    else _spawn_cell(args, k, n, mode)
                )
                records.append(rec)
                _ratios(records)
                print(json.dumps(rec), flush=True)

    result = {
        "benchmark": "secagg_scaling",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "settings": {
            "rounds": args.rounds,
            "measured_rounds": max(args.rounds - 1, 1),
            "num_shares": args.num_shares,
            "threshold": args.threshold,
            "pull_interval": args.pull_interval,
            "quick": args.quick,
            "fixes": args.fixes,
            "client_resources": "num_cpus=1 (2 sites at a time on 2 cores)",
            "update": "synthetic: global parameters + 0.001 (no training)",
        },
        "wall_s": time.perf_counter() - t_start,
        "results": records,
    }
    _write(result, args, ablation=args.fix_ablation)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
