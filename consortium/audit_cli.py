"""``consortium audit``: verify the audit trail, write the auditor's report, enrol site keys.

Registered in ``consortium/cli.py`` with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from consortium.audit_log import SITE_ROLE, AuditLog
from consortium.audit_report import build_report, write_report
from consortium.audit_verifier import AuditVerificationError, verify_store
from consortium.keys import (
    CONSORTIUM_KEY_FILE,
    KeyFileError,
    consortium_home,
    load_or_create_key,
    load_public_pem,
)
from consortium.store import StoreError

audit_app = typer.Typer(help="Verify and report the privacy audit trail.", no_args_is_help=True)
console = Console()

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="Run store (default: <home>/runs.sqlite).", envvar="HC_STORE")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run id (verify: all runs; "
                                                               "report: the latest).")]


def _store(store: Path | None) -> Path:
    return (store or consortium_home() / "runs.sqlite").expanduser().resolve()


@audit_app.command("verify")
def verify(
    store: StoreOpt = None,
    run: RunOpt = None,
    consortium_key: Annotated[Path | None, typer.Option(
        "--consortium-key", help="Pin the consortium public key (PEM) instead of trusting the "
                                 "one the log enrolled.")] = None,
) -> None:
    """Check the hash chain, every signature, every ε and every ceiling. Exit 0 only if all hold."""
    path = _store(store)
    try:
        pinned = load_public_pem(consortium_key.read_bytes()) if consortium_key else None
        result = verify_store(path, run_id=run, consortium_key=pinned)
    except (AuditVerificationError, KeyFileError, OSError) as exc:
        console.print(f"[bold red]AUDIT VERIFICATION FAILED[/] ({type(exc).__name__}) "
                      f"for {path}:\n{exc}")
        raise typer.Exit(1) from None
    console.print(f"[bold green]verified[/] {path}: {result.entries} log entries, chain and "
                  f"signatures intact; {len(result.checks)} receipts over {len(result.runs)} "
                  f"run(s), every ε reproduced by dp_accounting within 1%, no ceiling passed.")
    console.print(f"consortium key fingerprint: {result.consortium_fingerprint}")
    for site, fp in sorted(result.site_fingerprints.items()):
        console.print(f"  {site}: {fp}")


@audit_app.command("report")
def report(
    out: Annotated[Path, typer.Option("--out", help="Directory for the HTML and JSON report.")],
    store: StoreOpt = None,
    run: RunOpt = None,
) -> None:
    """Write the auditor's report of a run as self-contained HTML and JSON."""
    try:
        data = build_report(_store(store), run)
    except StoreError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    html_path, json_path = write_report(data, out)
    status = "verified" if data["verification"]["ok"] else "VERIFICATION FAILED"
    console.print(f"{status}: wrote {html_path} and {json_path}")
    if not data["verification"]["ok"]:
        raise typer.Exit(1)


@audit_app.command("enrol")
def enrol(
    site: Annotated[str, typer.Argument(help="Site id.")],
    public_key: Annotated[Path, typer.Argument(help="The site's receipt public key (PEM).")],
    store: StoreOpt = None,
) -> None:
    """Enrol a site's receipt key (deployment; the simulation default enrols automatically)."""
    try:
        key = load_public_pem(public_key.read_bytes())
    except (KeyFileError, OSError) as exc:
        console.print(f"[red]{public_key}: {exc}[/]")
        raise typer.Exit(1) from None
    signer = load_or_create_key(consortium_home() / CONSORTIUM_KEY_FILE)
    with AuditLog(_store(store), key=signer) as log:
        fp = log.enrol(SITE_ROLE, site, key)
    console.print(f"enrolled {site}: fingerprint {fp}")
