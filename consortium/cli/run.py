"""``consortium run | export | dashboard``: a local consortium, its export, the dashboard.

``consortium run`` resolves the task, the policy and the sites' data (an example, or a task file
and the sites' files), checks every site's data against the task, runs Flower's simulation with
a progress bar, and ends with a table; ``export`` prints the documented JSON;
``dashboard`` serves the Streamlit app on the run store.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortium.cli.baseline import print_check
from consortium.cli.options import (
    DataOpt,
    DeviceOpt,
    ExampleOpt,
    PolicyOpt,
    RoundsOpt,
    SeedOpt,
    StoreOpt,
    TaskOpt,
    VerboseOpt,
    configure_logging,
    store_path,
)
from consortium.errors import PlanError
from consortium.store.records import (
    ROUND_OK,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_STOPPED,
    RoundRecord,
)
from consortium.store.run_store import RunStore

if TYPE_CHECKING:  # the plan loads Opacus (its accountant): only for the commands that run
    from consortium.run.inputs import RunInputs
    from consortium.run.plan import RunPlan
    from consortium.run.resume import ResumePoint
    from consortium.run.workflow import RunOutcome
    from site_node.settings import NodeSettings

console = Console()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def round_table(plan: RunPlan, rounds: list[RoundRecord]) -> Table:
    """Round, status, mean accuracy and each site's cumulative ε (at its δ)."""
    sites = plan.loaded.policy.sites
    unit = plan.task.task.privacy_unit.unit
    table = Table(title=f"Run {plan.run_id} (every ε {unit}-level: it protects one {unit})")
    table.add_column("round", justify="right")
    table.add_column("status")
    table.add_column("mean acc", justify="right")
    for site in sites:
        table.add_column(f"ε {site}", justify="right")
    for r in rounds:
        eps = {s.site: s.epsilon for s in r.sites}
        table.add_row(str(r.round), r.status, _fmt(r.accuracy_mean),
                      *(_fmt(eps.get(site)) for site in sites))
    return table


def _announce(plan: RunPlan, resumed_at: int | None) -> None:
    p = plan.loaded.policy
    what = "local demonstration" if resumed_at is None else f"resumed at round {resumed_at}"
    console.print(
        f"Run [bold]{plan.run_id}[/] ({what}): {len(p.sites)} sites, {plan.rounds} "
        f"rounds, DP-SGD σ={plan.noise_multiplier:.4f} q={p.dp.sample_rate} "
        f"C={p.dp.max_grad_norm}, ε ceiling {p.epsilon_ceiling} at δ={p.delta}, SecAgg+ every "
        f"round\ntask {plan.task.name} (sha256 {plan.task.sha256[:16]}…, fixed preprocessing)"
        f"\npolicy {plan.loaded.source} (sha256 {plan.policy_sha256[:16]}…)"
        + ("; example site policies in force" if plan.example_site_policies else "")
        + f"\nstore {plan.store_path}", highlight=False,
    )


def run(
    example: ExampleOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    policy: PolicyOpt = None,
    rounds: RoundsOpt = None,
    store: StoreOpt = None,
    seed: SeedOpt = None,
    example_site_policies: Annotated[bool, typer.Option(
        "--example-site-policies",
        help="Let the demonstration's hospitals apply the example site policies in "
        "policies/sites/ (each may only tighten the consortium's).")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted or killed run from its last completed "
        "round (the latest such run, or --run), with the same sites' data (--example, or "
        "--task with --data); its policy, rounds and seed are the run's.")] = False,
    run_id: Annotated[str | None, typer.Option(
        "--run", help="With --resume: the run to continue.")] = None,
    verbose: VerboseOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Run a local consortium: every site on this machine, on Flower's simulation engine, with
    DP-SGD at every site and SecAgg+ every round.

    The sites are an example's (--example, default heart-disease) or the ones given with
    --task FILE --data SITE=PATH ...; the policy's member list is replaced by them. No two sites
    may have the same data; each site's data fingerprint is recorded with the run. Ctrl-C or
    SIGTERM stops the run at once (it is recorded as interrupted, exit 130); `--resume`
    continues it later, on the same data. A run that fails, or is stopped before any round
    (fewer than min_sites sites would admit it, or the budget allows none), exits 1.
    """
    from consortium.run.demo import prepare_sites
    from consortium.run.inputs import resolve_inputs
    from consortium.run.plan import make_plan_from_policy
    from site_node.device import parse_device, resolve_device

    configure_logging(verbose)
    device = parse_device(device, field="--device")
    gpu = resolve_device(device, field="--device").type == "cuda"
    if run_id is not None and not resume:
        raise typer.BadParameter("--run is only for --resume", param_hint="--run")
    path = store_path(store)
    if resume:
        _refuse_with_resume(policy=policy, rounds=rounds, seed=seed,
                            example_site_policies=example_site_policies)
        inputs = resolve_inputs(example=example, task=task, data=data or ())
        plan, done, outcome = _resume(inputs, path, run_id, verbose, device)
    else:
        inputs = resolve_inputs(example=example, task=task, data=data or (), policy=policy,
                                rounds=rounds)
        with ray_started_early(len(inputs.data), gpu=gpu):
            plan, sites = prepare_sites(make_plan_from_policy(
                inputs.policy, inputs.task, store_path=path, rounds=rounds, seed=seed or 0,
                choice_json=inputs.choice_json,
                demo=True, example_site_policies=example_site_policies), inputs.data,
                device=device)
            done, outcome = simulate_with_progress(plan, sites, None, verbose)
    _report(plan, done, outcome.status, outcome.reason, outcome.rounds_ok,
            outcome.rounds_failed)


def _refuse_with_resume(*, policy: Path | None, rounds: int | None, seed: int | None,
                        example_site_policies: bool) -> None:
    """A resumed run keeps its policy, rounds, seed and site policies: refuse each given."""
    given = {"--policy": policy is not None, "--rounds": rounds is not None,
             "--seed": seed is not None, "--example-site-policies": example_site_policies}
    for name, present in given.items():
        if present:
            raise typer.BadParameter(
                "a resumed run keeps the policy, rounds, seed and site policies it started "
                f"with; {name} cannot change them (leave it out)", param_hint=name)


def _report(plan: RunPlan, done: list[RoundRecord], status: str, reason: str, ok: int,
            failed: int) -> NoReturn:
    """The round table, how the run ended, what to do next; exits with the run's code."""
    console.print(round_table(plan, done))
    print_check(console, done)
    for rec in done:
        if rec.failure_reason:
            console.print(f"round {rec.round} failed: {rec.failure_reason}", highlight=False)
    console.print(f"Run ended: [bold]{status}[/] ({reason}); {ok} round(s) ok, {failed} "
                  "failed.", highlight=False)
    if status == RUN_INTERRUPTED:
        console.print(f"Resume it with: consortium run --resume --run {plan.run_id}")
    console.print(f"Export: consortium export --store {plan.store_path} --run {plan.run_id}\n"
                  f"Dashboard: consortium dashboard --store {plan.store_path}", highlight=False)
    nothing_ran = status == RUN_STOPPED and ok + failed == 0
    codes: dict[str, int] = {RUN_FAILED: 1, RUN_INTERRUPTED: 130}
    raise typer.Exit(1 if nothing_ran else codes.get(status, 0))


def _resume(inputs: RunInputs, path: Path, run_id: str | None, verbose: bool, device: str,
            ) -> tuple[RunPlan, list[RoundRecord], RunOutcome]:
    """Resume a run: check its task, its sites' data and keys, claim it, then run it. A run
    whose planned rounds were all recorded is closed (reported here; nothing is trained)."""
    from consortium.run.demo import prepare_sites
    from consortium.run.resume import claim, resume_plan

    plan, point = resume_plan(path, run_id)
    if plan.task.sha256 != inputs.task.sha256:
        raise PlanError(f"run {plan.run_id} trains task {plan.task.name} (sha256 "
                        f"{plan.task.sha256[:16]}…); give its sites' data (--example or "
                        "--task with --data) to resume it")
    plan, sites = prepare_sites(plan, inputs.data, resume=True, device=device)
    closed = claim(plan, point)  # of two resumes at once, one claims; the other stops here
    if closed is not None:
        ok = sum(r.status == ROUND_OK for r in point.rounds)
        console.print(f"Run {plan.run_id}: all {plan.rounds} planned rounds were recorded "
                      "before its process ended; it is now closed. Nothing was trained.",
                      highlight=False)
        _report(plan, list(point.rounds), closed.status, closed.reason, ok,
                point.recorded - ok)
    from consortium.run.simulation import uses_gpu

    with ray_started_early(len(sites), gpu=uses_gpu(sites)):
        done, outcome = simulate_with_progress(plan, sites, point, verbose)
    return plan, done, outcome


@contextmanager
def ray_started_early(num_sites: int, *, gpu: bool = False) -> Iterator[None]:
    """Start Ray in the background for the simulation to come, while this process loads torch,
    Opacus and Flower and checks the plan and the sites' data (the inputs' files have been read
    and validated). If the run is refused or fails before Flower took Ray over, Ray is shut
    down again (Flower shuts it down at the end of a simulation); nothing else was started."""
    from consortium.run import ray_session

    ray_session.start_in_background(ray_session.backend_config(num_sites, gpu=gpu))
    try:
        yield
    except BaseException:
        ray_session.stop()
        raise


def simulate_with_progress(plan: RunPlan, sites: list[NodeSettings],
                           point: ResumePoint | None, verbose: bool
                           ) -> tuple[list[RoundRecord], RunOutcome]:
    """Announce the run and run it on the prepared sites
    (:func:`~consortium.run.demo.prepare_sites`) with a progress bar (Ctrl-C or SIGTERM stop
    it); the recorded rounds and how it ended."""
    from consortium.run.simulation import simulate

    _announce(plan, point.next_round if point else None)
    done = list(point.rounds) if point else []
    stop = threading.Event()
    with _progress(plan, done) as on_round:  # simulate() stops the run on Ctrl-C or SIGTERM
        outcome = simulate(plan, sites, on_round=on_round, verbose=verbose, stop=stop,
                           resume=point)
    return done, outcome


@contextmanager
def _progress(plan: RunPlan, done: list[RoundRecord]) -> Iterator[Callable[[RoundRecord], None]]:
    """A progress bar over the planned rounds; yields the per-round callback."""
    columns = (TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("starting Flower simulation…", total=plan.rounds,
                                 completed=len(done))

        def on_round(rec: RoundRecord) -> None:
            done.append(rec)
            progress.update(task, advance=1, description=f"round {rec.round} {rec.status}, "
                            f"mean acc {_fmt(rec.accuracy_mean)}")

        yield on_round


def export(
    store: StoreOpt = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: latest).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format (json).")] = "json",
) -> None:
    """Print a run (default: the latest) as documented JSON (run-export/v4)."""
    from consortium.store.export import export_run

    if fmt != "json":
        raise typer.BadParameter(f"unsupported format {fmt!r} (supported: json)",
                                 param_hint="--format")
    with RunStore(store_path(store), readonly=True) as rs:
        data = export_run(rs, run_id)
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def streamlit_command(store: Path, port: int, host: str) -> list[str]:
    """The ``streamlit run`` command line that serves the dashboard on ``store``."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise typer.BadParameter("the dashboard package is not installed")
    app = Path(spec.origin).parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
            # A coordinator's view: no developer options (Deploy, rerun, clear cache); print stays.
            "--client.toolbarMode", "viewer", "--", "--store", str(store)]


def dashboard(
    store: StoreOpt = None,
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535,
                                      metavar="PORT")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the live dashboard for coordinators and auditors (reads the store only).

    Ctrl-C or SIGTERM stops the Streamlit server too.
    """
    from site_node.deployment.processes import port_open, wait_foreground

    if port_open(host, port, 0.5):
        raise typer.BadParameter(f"{host}:{port} is already in use (another dashboard?); "
                                 "choose a free one with --port", param_hint="--port")
    path = store_path(store)
    console.print(f"Dashboard on [bold]http://{host}:{port}[/] for {path} (Ctrl-C to stop)")
    proc = subprocess.Popen(streamlit_command(path, port, host))
    code = wait_foreground(proc)
    raise typer.Exit(0 if code in (0, 130, -2, -15) else code)


def register_commands(app: typer.Typer) -> None:
    """Add ``run``, ``export`` and ``dashboard`` to the ``consortium`` app."""
    app.command("run")(run)
    app.command("export")(export)
    app.command("dashboard")(dashboard)
