"""``site-node budget``: a site's lifetime and per-run ε, what is left, and every DP event.

The lifetime figure is :func:`site_node.privacy.budget.lifetime`: the same statement, at the same
δ, as ``site-node status`` and the site's latest signed receipt.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from site_node.errors import ConfigError
from site_node.home import default_site_home, demo_site_home
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger

console = Console()


def _delta(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 < value < 1):
        raise typer.BadParameter(f"δ must be in (0, 1), got {value}", param_hint="--delta")
    return value


def summary(state_dir: Path, delta: float | None = None) -> dict[str, Any] | None:
    """Lifetime and per-run ε of the ledger in ``state_dir`` (None if it has spent nothing)."""
    from site_node.privacy import budget as budgets  # loads Opacus' accountant

    with SiteLedger.in_state_dir(state_dir, readonly=True) as ledger:
        life = budgets.lifetime(ledger, delta=delta)
        if life is None:
            return None
        runs = [{"run_id": rid, "rounds": len(ledger.events(rid)),
                 "epsilon": budgets.run_epsilon(ledger, rid, delta=life.delta,
                                                accountant_name=life.accountant)}
                for rid in ledger.run_ids()]
        history = [{"run_id": e.run_id, "round": e.round, "recorded_at": e.recorded_at,
                    "noise_multiplier": e.mechanism.noise_multiplier,
                    "sample_rate": e.mechanism.sample_rate, "steps": e.mechanism.steps,
                    "max_grad_norm": e.mechanism.max_grad_norm,
                    "accountant": e.mechanism.accountant, "delta": e.delta,
                    "policy_sha256": e.policy_sha256} for e in ledger.events()]
        refusals = [{"run_id": r.run_id, "round": r.round, "reason": r.reason,
                     "recorded_at": r.recorded_at} for r in ledger.refusals()]
    return {"state_dir": str(state_dir), "lifetime_epsilon": life.epsilon, "delta": life.delta,
            "accountant": life.accountant, "runs": runs, "history": history,
            "refusals": refusals}


def _state_dir(home: Path | None, state_dir: Path | None, demo_site: str | None) -> Path:
    if sum(x is not None for x in (home, state_dir, demo_site)) > 1:
        raise ConfigError("give at most one of --home, --state-dir and --demo-site")
    if state_dir is not None:
        return state_dir.expanduser().resolve()
    if demo_site is not None:
        return demo_site_home(demo_site) / "state"
    return (home or default_site_home()).expanduser().resolve() / "state"


def budget(
    home: Annotated[Path | None, typer.Option(
        "--home", help="Site home (default: $SITE_NODE_HOME or ~/.hospital-consortium/site).")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="A node's state directory, instead of a site home.")] = None,
    demo_site: Annotated[str | None, typer.Option(
        "--demo-site", help="A site played by the local demonstration (`consortium run`).")
    ] = None,
    delta: Annotated[float | None, typer.Option(
        "--delta", callback=_delta,
        help="δ to state ε at (default: the δ of the latest DP event, as receipts do).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show lifetime and per-run ε spent, every DP event and every refused run."""
    directory = _state_dir(home, state_dir, demo_site)
    if not (directory / LEDGER_FILE).is_file():
        console.print(f"no privacy ledger in {directory}: this site has spent nothing yet")
        return
    s = summary(directory, delta)
    if s is None:
        console.print(f"{directory}: no DP event recorded yet: this site has spent nothing")
        return
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    console.print(f"state {directory}")
    console.print(f"lifetime ε = {s['lifetime_epsilon']:.4f} at δ = {s['delta']:g} "
                  f"({s['accountant']}; composed over every round, never added)")
    runs = Table("run", "rounds", f"ε (this run, δ={s['delta']:g})", title="Runs")
    for r in s["runs"]:
        runs.add_row(r["run_id"], str(r["rounds"]), f"{r['epsilon']:.4f}")
    console.print(runs)
    hist = Table("run", "round", "σ", "q", "steps", "C", "δ", "recorded", title="DP events")
    for h in s["history"]:
        hist.add_row(h["run_id"][:8], str(h["round"]), f"{h['noise_multiplier']:.4g}",
                     f"{h['sample_rate']:g}", str(h["steps"]), f"{h['max_grad_norm']:g}",
                     f"{h['delta']:g}", h["recorded_at"])
    console.print(hist)
    if s["refusals"]:
        refused = Table("run", "round", "reason", title="Refused (nothing spent)")
        for r in s["refusals"]:
            refused.add_row(r["run_id"][:8], str(r["round"]), r["reason"])
        console.print(refused)


def register_commands(app: typer.Typer) -> None:
    """Add ``budget`` to the ``site-node`` app."""
    app.command("budget")(budget)
