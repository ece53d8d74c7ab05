"""``consortium run``: resolve the plan, run the simulation with a progress bar, show a table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortium.plan import PlanError, RunPlan, make_plan
from consortium.records import RUN_FAILED, RoundRecord
from consortium.store import RunStore
from policies.loader import PolicyError


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def round_table(plan: RunPlan, rounds: list[RoundRecord]) -> Table:
    """Round, status, mean accuracy and each site's cumulative ε."""
    sites = plan.loaded.policy.sites
    table = Table(title=f"Run {plan.run_id}")
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


def run_simulation_cli(
    console: Console, *, policy: Path | None, store: Path, rounds: int, seed: int,
    verbose: bool,
) -> int:
    """Run the embedded default; returns the process exit code."""
    try:
        plan = make_plan(policy_path=policy, store_path=store, rounds=rounds, seed=seed)
    except (PolicyError, PlanError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    p = plan.loaded.policy
    console.print(
        f"Run [bold]{plan.run_id}[/]: {len(p.sites)} sites, {plan.rounds} rounds, DP-SGD "
        f"σ={plan.noise_multiplier:.4f} q={p.dp.sample_rate} C={p.dp.max_grad_norm}, "
        f"ε ceiling {p.epsilon_ceiling} at δ={p.delta}, SecAgg+ every round\n"
        f"policy {plan.loaded.source} (sha256 {plan.policy_sha256[:16]}…)\n"
        f"store {plan.store_path}", highlight=False,
    )
    from consortium.simulation import SimulationError, simulate

    done: list[RoundRecord] = []
    columns = (TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=verbose) as progress:
        task = progress.add_task("starting Flower simulation…", total=plan.rounds)

        def on_round(rec: RoundRecord) -> None:
            done.append(rec)
            progress.update(task, advance=1, description=f"round {rec.round} {rec.status}, "
                            f"mean acc {_fmt(rec.accuracy_mean)}")

        try:
            outcome = simulate(plan, on_round=on_round, verbose=verbose)
        except SimulationError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            return 1
    console.print(round_table(plan, done))
    console.print(f"Run ended: [bold]{outcome.status}[/] ({outcome.reason}); "
                  f"{outcome.rounds_ok} round(s) ok, {outcome.rounds_failed} failed.")
    with RunStore(plan.store_path, readonly=True) as rs:
        recorded = len(rs.rounds(plan.run_id))
    console.print(f"{recorded} round(s) recorded in {plan.store_path}\n"
                  f"Export: consortium export --store {plan.store_path} --run {plan.run_id}\n"
                  f"Dashboard: consortium dashboard --store {plan.store_path}", highlight=False)
    return 1 if outcome.status == RUN_FAILED else 0
