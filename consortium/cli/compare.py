"""``consortium compare``: the federated model against each site's local-only model.

It runs the federated consortium (as ``consortium run``), then each site alone for as many
rounds under the same instruction (so each site spends the same ε again: its ledger, its
receipts and the audit log say so), evaluates every model on every site's test split and prints,
per site and per class, the test accuracy of both on the site's own test set and on the union of
the test sets. The comparison is recorded in the run store (export, dashboard).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from consortium.cli.options import (
    DataOpt,
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
from consortium.store.records import (
    MODEL_FEDERATED,
    MODEL_LOCAL,
    RUN_COMPLETED,
    SCOPE_OWN,
    SCOPE_UNION,
    ComparisonRecord,
    RoundRecord,
)

console = Console()


def _pct(correct: int, total: int) -> str:
    return "—" if total == 0 else f"{correct / total:.0%}"


def comparison_table(comparison: ComparisonRecord, site: str) -> Table:
    """One site's rows: per class, local and federated accuracy on its own and the union's
    test sets, and how many training examples of the class the site holds."""
    table = Table(title=f"{site}: local-only vs federated (test accuracy per class)")
    for name in ("class", "site trains on", "local (own)", "federated (own)", "local (union)",
                 "federated (union)"):
        table.add_column(name, justify="left" if name == "class" else "right")
    cells = {(c.scope, c.model, c.class_index): c for c in comparison.cells if c.site == site}
    for (scope, model, k), c in sorted(cells.items(), key=lambda i: i[0][2]):
        if (scope, model) != (SCOPE_OWN, MODEL_LOCAL):
            continue
        shown = [cells[(s, m, k)] for s, m in ((SCOPE_OWN, MODEL_LOCAL),
                                               (SCOPE_OWN, MODEL_FEDERATED),
                                               (SCOPE_UNION, MODEL_LOCAL),
                                               (SCOPE_UNION, MODEL_FEDERATED))]
        seen = str(c.site_train_count) if c.site_train_count else "[red]none[/]"
        table.add_row(c.class_name, seen, *(_pct(x.correct, x.total) for x in shown))
    return table


def compare(
    example: ExampleOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    policy: PolicyOpt = None,
    rounds: RoundsOpt = None,
    store: StoreOpt = None,
    seed: SeedOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train the federated model and, for each site, a local-only model with the same DP
    budget; show per site and per class how each does on the site's own test set and on the
    union of the test sets. Both spend privacy budget; both are recorded as runs."""
    from consortium.cli.run import ray_started_early, simulate_with_progress
    from consortium.run.comparison import compare as record
    from consortium.run.comparison import local_runs, summary_line
    from consortium.run.demo import prepare_sites
    from consortium.run.inputs import resolve_inputs
    from consortium.run.plan import make_plan_from_policy

    configure_logging(verbose)
    inputs = resolve_inputs(example=example, task=task, data=data or (), policy=policy,
                            rounds=rounds)
    with ray_started_early(len(inputs.data)):
        plan, sites = prepare_sites(make_plan_from_policy(
            inputs.policy, inputs.task, store_path=store_path(store), rounds=rounds,
            seed=seed or 0, choice_json=inputs.choice_json, demo=True), inputs.data)
        done, outcome = simulate_with_progress(plan, sites, None, verbose)
    console.print(f"Federated run {plan.run_id}: {outcome.status} ({outcome.reason})")
    if outcome.rounds_ok == 0:
        console.print("[red]The federated run completed no round: nothing to compare.[/]")
        raise typer.Exit(1)

    def show(site: str, rec: RoundRecord) -> None:
        acc = "—" if rec.accuracy_mean is None else f"{rec.accuracy_mean:.3f}"
        why = f" ({rec.failure_reason})" if rec.failure_reason else ""
        console.print(f"  local {site}: round {rec.round} {rec.status}, accuracy {acc}{why}",
                      highlight=False)

    console.print(f"Local-only runs: each site alone, {len(done)} round(s), the same mechanism "
                  "(and ε) as the federated run")
    outcomes = local_runs(plan, inputs.data, len(done), on_round=show)
    comparison = record(plan, inputs.data, outcomes)
    for site in plan.loaded.policy.sites:
        console.print(comparison_table(comparison, site))
    console.print(f"Comparison {comparison.comparison_id} recorded in {plan.store_path} "
                  f"(federated run {plan.run_id}; local runs "
                  f"{', '.join(f'{s} {r}' for s, r in comparison.local_runs.items())})",
                  highlight=False)
    failed = [s for s, o in outcomes.items() if o.status != RUN_COMPLETED]
    if failed:
        console.print(f"[yellow]local run(s) of {', '.join(failed)} did not complete[/]")
    console.print(summary_line(comparison.cells, plan.loaded.policy.sites), highlight=False)
    raise typer.Exit(0 if not failed else 1)


def register_commands(app: typer.Typer) -> None:
    """Add ``compare`` to the ``consortium`` app."""
    app.command("compare")(compare)
