"""DP-SGD cost per Opacus mode against plain SGD: samples/s, peak memory, per-sample-norm agreement.

For every (model config × mode) a fresh Python subprocess builds the same model (fixed seed) and
the same synthetic batch, runs warm-up steps, then times steps for at least ``--min-time``
seconds, and reports samples/s and peak memory. Modes: ``plain`` (non-private SGD, the
baseline), Opacus 1.6's ``hooks``, ``ghost``, ``functorch``, ``ew``, and ``bk``, this folder's
prototype (book-keeping DP-SGD, ``bk.py``; not part of Opacus); a mode that raises is recorded
as not working, with its error.

Peak memory: on CPU, the peak resident set size of the subprocess (``getrusage`` ru_maxrss)
minus its RSS just before the first training step (so imports, model and data are excluded);
on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the first step.

Per-sample gradient norms: each DP worker also computes the per-sample norms of one fixed
16-sample batch on the initial weights (hooks/functorch/ew from ``grad_sample``, ghost from the
norms it clips with); a ``reference`` worker computes them exactly with plain autograd one
sample at a time. The parent reports each mode's max relative difference to the reference.

Usage::

    python bench/dpsgd/dp_modes.py            # full CPU run (~10 min on 2 cores)
    python bench/dpsgd/dp_modes.py --quick    # ~2 min
    python bench/dpsgd/dp_modes.py --device cuda --batch 512 --gpu-configs --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("plain", "hooks", "ghost", "functorch", "ew", "bk", "bk-site")
DP_MODES = MODES[1:]  # "bk": this folder's prototype (bk.py); "bk-site": the product's mode
CHECK_SAMPLES = 16


@dataclass(frozen=True)
class Config:
    """One model at one input size."""

    name: str
    model: str
    in_channels: int
    image_size: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.in_channels}×{self.image_size}×{self.image_size}"


CPU_CONFIGS = [
    Config("cnn", "cnn", 1, 64),
    Config("cnn", "cnn", 1, 28),
    Config("cnn", "cnn", 1, 8),
    Config("resnet18", "resnet18", 3, 64),
]
QUICK_CONFIGS = [Config("cnn", "cnn", 1, 64), Config("resnet18", "resnet18", 3, 64)]
GPU_CONFIGS = [
    Config("cnn", "cnn", 1, 64),
    Config("cnn", "cnn", 1, 28),
    Config("resnet18", "resnet18", 3, 128),
]


# ----------------------------------------------------------------------------- worker side
def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def run_worker(
    cfg: Config,
    mode: str,
    batch: int,
    device_name: str,
    min_time: float,
    warmup: int,
    threads: int | None = None,
    clock_name: str = "wall",
) -> dict[str, Any]:
    """Measure one (config, mode) in this process; returns the result record."""
    import copy

    import torch
    from torch import nn

    sys.path.insert(0, str(HERE))
    from mode_select import make_private, per_sample_norms, reference_norms, train_step
    from models import build_model, num_parameters

    device = torch.device(device_name)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        clock_name = "wall"  # process time does not see GPU work
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=cfg.in_channels, image_size=cfg.image_size)
    model.to(device).train()
    gen = torch.Generator().manual_seed(1)
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    xc = torch.randn(CHECK_SAMPLES, *shape, generator=gen).to(device)
    yc = torch.randint(0, 10, (CHECK_SAMPLES,), generator=gen).to(device)
    record: dict[str, Any] = {
        "model": cfg.name,
        "config": cfg.label,
        "image_size": cfg.image_size,
        "in_channels": cfg.in_channels,
        "mode": mode,
        "batch": batch,
        "device": device_name,
        "params": num_parameters(model),
        "threads": torch.get_num_threads(),
        "warmup_steps": warmup,
        "min_time_s": min_time,
        "works": False,
    }
    if mode == "reference":
        record["norms"] = reference_norms(model, xc, yc).tolist()
        record["works"] = True
        return record
    check_model = copy.deepcopy(model) if mode != "plain" else None
    if mode == "plain":
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        crit = nn.CrossEntropyLoss()

        def step() -> None:
            opt.zero_grad()
            crit(model(x), y).backward()
            opt.step()
    else:
        setup = make_private(model, mode, batch)

        def step() -> None:
            train_step(setup, x, y)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    try:
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        sync()
        record["warmup_s"] = time.perf_counter() - t0
        steps, durations = 0, []
        record["loadavg_1m_before"] = os.getloadavg()[0]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start = clock()
        while steps < 3 or clock() - start < min_time:
            s = clock()
            step()
            sync()
            durations.append(clock() - s)
            steps += 1
        elapsed = clock() - start
        record["cpu_s"] = time.process_time() - cpu0
        record["wall_s"] = time.perf_counter() - wall0
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return record
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
        record["peak_total_bytes"] = peak
    else:
        peak = _peak_rss_bytes()
        record["peak_total_bytes"] = peak
        record["rss_before_bytes"] = base
    durations.sort()
    median = durations[len(durations) // 2]
    record.update(
        works=True,
        steps=steps,
        clock=clock_name,
        elapsed_s=elapsed,
        step_median_s=median,
        samples_per_s=batch / median,  # median step: robust to bursts of machine load
        samples_per_s_mean=batch * steps / elapsed,
        samples_per_s_wall=batch * steps / record["wall_s"],
        samples_per_s_cpu=batch * steps / max(record["cpu_s"], 1e-9),
        peak_delta_bytes=max(peak - base, 0),
    )
    if check_model is not None:
        try:
            check = make_private(check_model, mode, CHECK_SAMPLES)
            record["norms"] = per_sample_norms(check, xc, yc).double().cpu().tolist()
        except Exception as exc:
            record["norm_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return record


# ----------------------------------------------------------------------------- parent side
def _spawn(cfg: Config, mode: str, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--worker-config",
        json.dumps(asdict(cfg)),
        "--worker-mode",
        mode,
        "--batch",
        str(args.batch),
        "--device",
        args.device,
        "--min-time",
        str(args.min_time),
        "--warmup",
        str(args.warmup),
        "--clock",
        args.clock,
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {
            "model": cfg.name,
            "config": cfg.label,
            "mode": mode,
            "works": False,
            "error": f"timeout after {timeout:.0f} s (skipped)",
        }
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {
            "model": cfg.name,
            "config": cfg.label,
            "mode": mode,
            "works": False,
            "error": f"worker exit {proc.returncode}: {tail}"[:300],
        }
    rec: dict[str, Any] = json.loads(lines[-1])
    rec["process_s"] = time.perf_counter() - t0
    return rec


def _best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest samples/s (the least disturbed), with every run's figure."""
    ok = [r for r in runs if r.get("works")]
    best = dict(max(ok, key=lambda r: r["samples_per_s"]) if ok else runs[0])
    best["samples_per_s_runs"] = [r.get("samples_per_s") for r in runs]
    best["repeats"] = len(runs)
    best["peak_delta_bytes_runs"] = [r.get("peak_delta_bytes") for r in runs]
    return best


def _summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add slowdown, memory ratio and norm agreement to the per-mode records."""
    out = []
    by_cfg: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        by_cfg.setdefault(r["config"], {})[r["mode"]] = r
    for recs in by_cfg.values():
        plain, ref = recs.get("plain"), recs.get("reference")
        for mode in MODES:
            found = recs.get(mode)
            if found is None:
                continue
            r = dict(found)
            if plain and plain.get("works") and r.get("works"):
                r["slowdown"] = plain["samples_per_s"] / r["samples_per_s"]
                r["memory_ratio"] = r["peak_delta_bytes"] / max(plain["peak_delta_bytes"], 1)
            if ref and "norms" in r:
                a, b = r["norms"], ref["norms"]
                r["norm_max_rel_diff"] = max(
                    abs(u - v) / max(abs(v), 1e-12) for u, v in zip(a, b, strict=True)
                )
            r.pop("norms", None)
            out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CNN 64 px + ResNet 64 px, short timing")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--batch", type=int, default=None, help="batch (default 64 CPU, 512 CUDA)")
    p.add_argument("--min-time", type=float, default=None, help="timed seconds per mode")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (CPU default 1: see --clock)",
    )
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="time steps by process CPU time (CPU default: robust when other jobs share the "
        "cores; needs --threads 1) or wall clock (CUDA, or an idle machine)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved runs per mode, best kept (default 2; 1 with --quick)",
    )
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--configs", default=None, help="e.g. cnn:1:64,resnet18:3:64")
    p.add_argument("--gpu-configs", action="store_true", help="CNN 64/28 px + ResNet 128 px")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--select",
        action="store_true",
        help="run mode_select.select_mode on each config (Opacus modes, then + bk) at the "
        "benchmark batch; writes select_mode.json",
    )
    p.add_argument(
        "--table", type=Path, help="print a dp_modes.json as a Markdown table; runs nothing"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="combine earlier dp_modes.json files (later ones win per config × mode) into "
        "--out, then plot; runs nothing",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    p.add_argument("--worker-mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.batch is None:
        args.batch = 512 if args.device.startswith("cuda") else 64
    on_cpu = not args.device.startswith("cuda")
    if args.threads is None and on_cpu:
        args.threads = 1
    if args.clock is None:
        args.clock = "cpu" if on_cpu and args.threads == 1 else "wall"
    # The ResNet on CPU takes 1-15 CPU-seconds a step per mode: unless told otherwise it gets
    # 1 warm-up step, 3 timed steps and no repeat (the CPU clock keeps that stable).
    heavy_cpu = {"repeats": 1, "warmup": 1, "min_time": 0.0}
    explicit = {k: getattr(args, k) for k in heavy_cpu}
    if args.repeats is None:
        args.repeats = 1 if args.quick else 2
    if args.min_time is None:
        args.min_time = 4.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 2
    if args.worker:
        cfg = Config(**json.loads(args.worker_config))
        rec = run_worker(
            cfg,
            args.worker_mode,
            args.batch,
            args.device,
            args.min_time,
            args.warmup,
            args.threads,
            args.clock,
        )
        print(json.dumps(rec), flush=True)
        return 0
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return 0
    if args.select:
        run_selector(args, _configs(args))
        return 0
    if args.merge:
        loaded = []
        for f in args.merge:
            text = f.read_text()
            if f.suffix == ".jsonl":
                lines = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
                loaded.append({"results": lines, "created": None, "source": str(f)})
            else:
                loaded.append(json.loads(text))
        merged = merge_results(loaded)
        _write(merged, args.out, plot=not args.no_plot)
        return 0

    configs = _configs(args)
    modes = [m for m in args.modes.split(",") if m]
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for cfg in configs:
        cargs = argparse.Namespace(**vars(args))
        if cfg.model == "resnet18" and on_cpu:
            for key, value in heavy_cpu.items():
                if explicit[key] is None:
                    setattr(cargs, key, value)
        cfg_records = [_spawn(cfg, "reference", cargs, args.timeout)]
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for _ in range(cargs.repeats):  # interleaved, so a burst of machine load hits all modes
            for mode in modes:
                runs[mode].append(_spawn(cfg, mode, cargs, args.timeout))
        for mode in modes:
            cfg_records.append(_best_of(runs[mode]))
        for r in _summarise(cfg_records):
            line = {k: v for k, v in r.items() if k not in ("norms",)}
            print(json.dumps(line), flush=True)
            records.append(r)
    import torch

    result = {
        "benchmark": "dp_modes",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "torch": torch.__version__,
            "opacus": __import__("opacus").__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "batch": args.batch,
            "min_time_s": args.min_time,
            "warmup_steps": args.warmup,
            "repeats": args.repeats,
            "kept": "fastest of the interleaved repeats",
            "threads": args.threads,
            "clock": args.clock,
            "throughput": "batch / median step time (by the clock)",
            "quick": args.quick,
            "check_samples": CHECK_SAMPLES,
            "memory": "CPU: peak RSS − RSS before 1st step; CUDA: max_memory_allocated − before",
            "sampling": "fixed-size synthetic batches (poisson_sampling=False)",
        },
        "wall_s": time.perf_counter() - t_start,
        "results": records,
    }
    _write(result, args.out, plot=not args.no_plot)
    return 0


def _configs(args: argparse.Namespace) -> list[Config]:
    if args.configs:
        configs = []
        for item in args.configs.split(","):
            name, ch, size = item.split(":")
            configs.append(Config(name, name, int(ch), int(size)))
    elif args.gpu_configs:
        configs = GPU_CONFIGS
    else:
        configs = QUICK_CONFIGS if args.quick else CPU_CONFIGS
    return list(configs)


def run_selector(args: argparse.Namespace, configs: list[Config]) -> None:
    """What the site's selector picks per config, Opacus modes only and with the prototype."""
    import torch

    sys.path.insert(0, str(HERE))
    from mode_select import MODES as OPACUS_MODES
    from mode_select import PROTOTYPE_MODES, select_mode
    from models import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = []
    for cfg in configs:
        for candidates in (OPACUS_MODES, OPACUS_MODES + PROTOTYPE_MODES):
            torch.manual_seed(0)
            model = build_model(
                cfg.model, in_channels=cfg.in_channels, image_size=cfg.image_size
            ).to(device)
            gen = torch.Generator().manual_seed(1)
            shape = (args.batch, cfg.in_channels, cfg.image_size, cfg.image_size)
            x = torch.randn(*shape, generator=gen).to(device)
            y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
            start = time.perf_counter()
            mode, timings = select_mode(model, (x, y), candidates, steps=3, warmup=1)
            rec = {
                "config": cfg.label,
                "batch": args.batch,
                "device": args.device,
                "candidates": list(candidates),
                "selected": mode,
                "selector_wall_s": time.perf_counter() - start,
                "step_s": {m: t.step_s for m, t in timings.items()},
                "max_rel_norm_diff": {m: t.max_rel_norm_diff for m, t in timings.items()},
                "errors": {m: t.error for m, t in timings.items() if t.error},
            }
            print(json.dumps(rec), flush=True)
            out.append(rec)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "select_mode.json").write_text(json.dumps(out, indent=1) + "\n")


def markdown_table(result: dict[str, Any]) -> str:
    """Config × mode rows: samples/s, slowdown, peak memory delta and ratio, works, norm diff."""
    lines = [
        "| model (input) | mode | works | samples/s | slowdown vs plain | peak mem Δ (MiB) "
        "| memory vs plain | max rel. norm diff |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    order = {m: i for i, m in enumerate(MODES)}
    rows = sorted(result["results"], key=lambda r: (r["config"], order.get(r["mode"], 99)))
    for r in rows:
        if r["mode"] == "reference":
            continue
        ok = r.get("works")
        diff = r.get("norm_max_rel_diff")
        lines.append(
            "| {cfg} | {mode} | {works} | {sps} | {slow} | {mem} | {memr} | {diff} |".format(
                cfg=r["config"],
                mode=r["mode"] + (" (prototype)" if r["mode"] == "bk" else ""),
                works="yes" if ok else f"**no**: {r.get('error', '')[:80]}",
                sps=f"{r['samples_per_s']:.1f}" if ok else "–",
                slow=f"{r['slowdown']:.2f}×" if ok and "slowdown" in r else "–",
                mem=f"{r['peak_delta_bytes'] / 2**20:.0f}" if ok else "–",
                memr=f"{r['memory_ratio']:.2f}×" if ok and "memory_ratio" in r else "–",
                diff=f"{diff:.1e}"
                if diff is not None
                else ("n/a" if r["mode"] == "plain" else "–"),
            )
        )
    return "\n".join(lines)


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs: later runs replace earlier ones per (config, mode).

    A run may also be the JSON lines a run printed (``{"results": [...]}`` is built from them).
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for res in results:
        for r in res["results"]:
            rows[(r["config"], r["mode"])] = {**r, "run_created": res.get("created")}
    by_cfg: dict[str, dict[str, dict[str, Any]]] = {}
    for (cfg, mode), r in rows.items():
        by_cfg.setdefault(cfg, {})[mode] = r
    for recs in by_cfg.values():  # ratios against the plain run kept for that config
        plain = recs.get("plain")
        for r in recs.values():
            if plain and plain.get("works") and r.get("works"):
                r["slowdown"] = plain["samples_per_s"] / r["samples_per_s"]
                r["memory_ratio"] = r["peak_delta_bytes"] / max(plain["peak_delta_bytes"], 1)
    full = [r for r in results if "machine" in r]
    merged = dict(full[-1] if full else results[-1])
    merged["results"] = list(rows.values())
    merged["merged_from"] = [
        {"created": r.get("created"), "settings": r.get("settings")} for r in results
    ]
    return merged


def _write(result: dict[str, Any], out: Path, *, plot: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "dp_modes.json").write_text(json.dumps(result, indent=1) + "\n")
    if plot:
        sys.path.insert(0, str(HERE.parent))
        from plotting import plot_dp_modes

        plot_dp_modes(result, out / "dp_modes.png")
    print(f"# wrote {out / 'dp_modes.json'} ({result.get('wall_s', 0):.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
