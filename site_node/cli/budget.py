"""``site-node budget``: a site's lifetime and per-run ε, what is left, and every DP event.

It also lists the rounds runs under way have reserved (:mod:`site_node.privacy.reservations`)
and, with ``--release RUN``, drops the reservation of a run the site admin knows is dead. A home,
state directory or demonstration site that does not exist is an error naming it: only a real
home with an empty ledger has "spent nothing".

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

from site_node.errors import ConfigError, LedgerError, SiteHomeError
from site_node.home import default_site_home, demo_site_home, load_site_home
from site_node.privacy import reservations
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger

console = Console()


def _delta(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 < value < 1):
        raise typer.BadParameter(f"δ must be in (0, 1), got {value}", param_hint="--delta")
    return value


def _reserved(ledger: SiteLedger) -> list[dict[str, Any]]:
    return [{"run_id": r.run_id, "next_round": r.next_round, "last_round": r.last_round,
             "rounds": r.remaining, "noise_multiplier": r.mechanism.noise_multiplier,
             "sample_rate": r.mechanism.sample_rate, "steps": r.mechanism.steps,
             "reserved_at": r.reserved_at, "updated_at": r.updated_at}
            for r in reservations.reservations(ledger)]


def summary(state_dir: Path, delta: float | None = None) -> dict[str, Any] | None:
    """Lifetime and per-run ε of the ledger in ``state_dir``, and the rounds runs under way have
    reserved (None if it has spent nothing and nothing is reserved)."""
    from site_node.privacy import budget as budgets  # loads Opacus' accountant

    with SiteLedger.in_state_dir(state_dir, readonly=True) as ledger:
        reserved = _reserved(ledger)
        life = budgets.lifetime(ledger, delta=delta)
        if life is None:
            if not reserved:
                return None
            return {"state_dir": str(state_dir), "lifetime_epsilon": 0.0, "delta": delta,
                    "accountant": None, "runs": [], "history": [], "refusals": [],
                    "reservations": reserved}
        runs = [{"run_id": rid, "rounds": len(ledger.events(rid)),
                 "epsilon": budgets.run_epsilon(ledger, rid, delta=life.delta,
                                                accountant_name=life.accountant)}
                for rid in ledger.run_ids()]
        history = [{"run_id": e.run_id, "round": e.round, "recorded_at": e.recorded_at,
                    "noise_multiplier": e.mechanism.noise_multiplier,
                    "sample_rate": e.mechanism.sample_rate, "steps": e.mechanism.steps,
                    "max_grad_norm": e.mechanism.max_grad_norm,
                    "accountant": e.mechanism.accountant, "delta": e.delta,
                    "privacy_unit": e.mechanism.unit,
                    "policy_sha256": e.policy_sha256} for e in ledger.events()]
        refusals = [{"run_id": r.run_id, "round": r.round, "reason": r.reason,
                     "recorded_at": r.recorded_at} for r in ledger.refusals()]
    return {"state_dir": str(state_dir), "lifetime_epsilon": life.epsilon, "delta": life.delta,
            "privacy_unit": life.unit, "accountant": life.accountant, "runs": runs,
            "history": history, "refusals": refusals, "reservations": reserved}


def _state_dir(home: Path | None, state_dir: Path | None, demo_site: str | None) -> Path:
    """The state directory asked for; one that does not exist is an error naming it (a budget
    tool never reports an unspent budget for a site it cannot find)."""
    if sum(x is not None for x in (home, state_dir, demo_site)) > 1:
        raise ConfigError("give at most one of --home, --state-dir and --demo-site")
    if state_dir is not None:
        found = state_dir.expanduser().resolve()
        if not found.is_dir():
            raise SiteHomeError(f"no state directory {found} (--state-dir): no such folder")
        return found
    if demo_site is not None:
        root = demo_site_home(demo_site)
        if not (root / "site.toml").is_file():
            raise SiteHomeError(f"no demonstration site {demo_site!r}: {root} is not a site home "
                                "(a `consortium run` creates the homes of the sites it plays)")
        return load_site_home(root).state_dir
    return load_site_home(home or default_site_home()).state_dir


def _release(directory: Path, run_id: str) -> None:
    if not (directory / LEDGER_FILE).is_file():
        raise LedgerError(f"no privacy ledger in {directory}: nothing to release")
    with SiteLedger.in_state_dir(directory) as ledger:
        released = reservations.release(ledger, run_id)
    if not released:
        raise LedgerError(f"{directory}: run {run_id} holds no reservation")
    console.print(f"released the reservation of run {run_id} in {directory}; if that run is "
                  "still under way, its next round reserves again")


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
    release: Annotated[str | None, typer.Option(
        "--release", metavar="RUN",
        help="Release the reservation of RUN (a run you know is dead: killed, never resumed).")
    ] = None,
) -> None:
    """Show lifetime and per-run ε spent, rounds reserved by runs under way, every DP event and
    every refused run."""
    directory = _state_dir(home, state_dir, demo_site)
    if release is not None:
        _release(directory, release)
        return
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
    _print_reserved(s["reservations"])
    if not s["history"]:
        console.print("no DP event recorded yet: this site has spent nothing")
        return
    unit = s["privacy_unit"]
    console.print(f"lifetime ε = {s['lifetime_epsilon']:.4f} ({unit}-level: protects one "
                  f"{unit}) at δ = {s['delta']:g} ({s['accountant']}; composed over every "
                  "round, never added)")
    runs = Table("run", "rounds", f"ε ({unit}-level, this run, δ={s['delta']:g})",
                 title="Runs")
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


def _print_reserved(reserved: list[dict[str, Any]]) -> None:
    if not reserved:
        return
    table = Table("run", "rounds", "σ", "q", "steps", "reserved", "updated",
                  title="Reserved by runs under way (counted as spent by every other run's "
                  "admission; `--release RUN` for a run known dead)")
    for r in reserved:
        table.add_row(r["run_id"], f"{r['next_round']}..{r['last_round']} ({r['rounds']})",
                      f"{r['noise_multiplier']:.4g}", f"{r['sample_rate']:g}", str(r["steps"]),
                      r["reserved_at"], r["updated_at"])
    console.print(table)


def register_commands(app: typer.Typer) -> None:
    """Add ``budget`` to the ``site-node`` app."""
    app.command("budget")(budget)
