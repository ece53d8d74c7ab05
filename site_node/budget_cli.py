"""``site-node budget``: a site's lifetime and per-run ε, remaining budget and history.

Registered in ``site_node/cli.py`` with ``app.command("budget")(budget)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consortium.keys import site_state_dir
from site_node.guard import DEFAULT_LIFETIME_CEILING, find_site_policy
from site_node.ledger import LEDGER_FILE, SiteLedger

console = Console()


def budget_summary(state_dir: Path, site: str, delta: float) -> dict[str, object]:
    """Lifetime and per-run ε (composed from the ledger) with the site's ceilings."""
    policy = find_site_policy(site, state_dir)
    lifetime_ceiling = (policy.policy.lifetime_epsilon_ceiling if policy else None) or \
        DEFAULT_LIFETIME_CEILING
    with SiteLedger.in_state_dir(state_dir) as ledger:
        events = ledger.events()
        acct = "prv" if events and all(e.mechanism.accountant == "prv" for e in events) else "rdp"
        lifetime = ledger.lifetime_epsilon(delta, accountant=acct)
        runs = [{"run_id": rid, "rounds": len(ledger.events(rid)),
                 "epsilon": ledger.run_epsilon(rid, delta, accountant=acct)}
                for rid in ledger.run_ids()]
    return {"site": site, "state_dir": str(state_dir), "delta": delta, "accountant": acct,
            "lifetime_epsilon": lifetime, "lifetime_epsilon_ceiling": lifetime_ceiling,
            "remaining": max(0.0, lifetime_ceiling - lifetime), "runs": runs,
            "history": [{"run_id": e.run_id, "round": e.round, "recorded_at": e.recorded_at,
                         "noise_multiplier": e.mechanism.noise_multiplier,
                         "sample_rate": e.mechanism.sample_rate, "steps": e.mechanism.steps,
                         "max_grad_norm": e.mechanism.max_grad_norm,
                         "policy_sha256": e.policy_sha256} for e in events]}


def budget(
    site: Annotated[str | None, typer.Option(
        "--site", help="Site id (default: the state dir's name).")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="The site's state dir (default: the simulation default's).")] = None,
    delta: Annotated[float | None, typer.Option(
        "--delta", help="δ to state ε at (default: the smallest δ in the ledger).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show lifetime and per-run ε spent, the remaining budget, and every DP event."""
    if site is None and state_dir is None:
        raise typer.BadParameter("give --site or --state-dir")
    directory = (state_dir or site_state_dir(str(site))).expanduser().resolve()
    site = site or directory.name
    if not (directory / LEDGER_FILE).is_file():
        console.print(f"no privacy ledger in {directory}: this site has spent nothing yet")
        raise typer.Exit(0)
    if delta is None:
        with SiteLedger.in_state_dir(directory) as ledger:
            delta = min((e.delta for e in ledger.events()), default=1e-5)
    s = budget_summary(directory, site, delta)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    console.print(f"site {site} ({directory}), δ={delta:g}, accountant {s['accountant']}")
    console.print(f"lifetime ε {s['lifetime_epsilon']:.4f} of {s['lifetime_epsilon_ceiling']:g}"
                  f" — remaining {s['remaining']:.4f} (composed, not added)")
    runs = Table("run", "rounds", "ε (this run)", title="Runs")
    for r in s["runs"]:  # type: ignore[attr-defined]
        runs.add_row(r["run_id"], str(r["rounds"]), f"{r['epsilon']:.4f}")
    console.print(runs)
    hist = Table("run", "round", "σ", "q", "steps", "C", "recorded", title="DP events")
    for h in s["history"]:  # type: ignore[attr-defined]
        hist.add_row(h["run_id"][:8], str(h["round"]), f"{h['noise_multiplier']:.4g}",
                     f"{h['sample_rate']:g}", str(h["steps"]), f"{h['max_grad_norm']:g}",
                     h["recorded_at"])
    console.print(hist)
