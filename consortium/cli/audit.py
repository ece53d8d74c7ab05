"""``consortium audit``: verify the audit trail and write the auditor's report.

``verify`` exits 0 only when everything holds; 1 when a record is broken (chain, signature,
receipt, ε, ceiling); 3 when the trail is intact but records security events (each is named).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from consortium.cli.options import StoreOpt, store_path
from consortium.errors import AuditVerificationError, SecurityEventsFound
from consortium.store.records import MODE_DEMO
from site_node.protocol.keys import load_public_key_file

if TYPE_CHECKING:  # the audit's modules load dp_accounting: only for the commands that use them
    from consortium.audit.verify import VerificationResult

audit_app = typer.Typer(help="Verify and report the privacy audit trail.", no_args_is_help=True)
console = Console(soft_wrap=True)
EXIT_BROKEN, EXIT_SECURITY = 1, 3

RunOpt = Annotated[str | None, typer.Option(
    "--run", help="Run id (verify: every run; report: the latest).")]


def _print_result(result: VerificationResult) -> None:
    console.print(f"consortium key fingerprint: {result.consortium_fingerprint}")
    for site, fps in sorted(result.site_fingerprints.items()):
        console.print(f"  {site}: {', '.join(fps)}")
    demo = [rid for rid, mode in result.modes.items() if mode == MODE_DEMO]
    if demo:
        console.print(f"[yellow]{len(demo)} run(s) are local demonstrations: the demonstration "
                      "created the sites' keys, so their receipts prove only what one machine "
                      "attests.[/]")


@audit_app.command("verify")
def verify(
    store: StoreOpt = None,
    run: RunOpt = None,
    consortium_key: Annotated[Path | None, typer.Option(
        "--consortium-key", help="Pin the consortium public key (PEM) instead of trusting the "
                                 "one the log enrolled.")] = None,
) -> None:
    """Check the hash chain, every signature, every ε and ceiling, and security events."""
    from consortium.audit.verify import verify_store

    path = store_path(store)
    pinned = load_public_key_file(consortium_key) if consortium_key else None
    try:
        result = verify_store(path, run_id=run, consortium_key=pinned)
    except SecurityEventsFound as exc:
        console.print(f"[bold red]AUDIT VERIFICATION FAILED: SECURITY EVENTS[/] for {path}:")
        for event in getattr(exc.result, "security_events", []):
            console.print(f"  entry {event.seq} (run {event.run_id}): {event.reason}",
                          highlight=False)
        raise typer.Exit(EXIT_SECURITY) from None
    except AuditVerificationError as exc:
        console.print(f"[bold red]AUDIT VERIFICATION FAILED[/] ({type(exc).__name__}) "
                      f"for {path}:\n{exc}", highlight=False)
        raise typer.Exit(EXIT_BROKEN) from None
    console.print(f"[bold green]verified[/] {path}: {result.entries} log entries, chain and "
                  f"signatures intact; {len(result.checks)} receipts over {len(result.runs)} "
                  f"run(s), every ε reproduced by dp_accounting within 1%, no ceiling passed, "
                  "no security event.")
    _print_result(result)


@audit_app.command("report")
def report(
    out: Annotated[Path, typer.Option("--out", help="Directory for the HTML and JSON report.")],
    store: StoreOpt = None,
    run: RunOpt = None,
) -> None:
    """Write the auditor's report of a run as self-contained HTML and JSON."""
    from consortium.audit.report import build_report, write_report

    data = build_report(store_path(store), run)
    html_path, json_path = write_report(data, out)
    v = data["verification"]
    status = "verified" if v["ok"] else f"VERIFICATION FAILED ({v['error_kind']})"
    console.print(f"{status}: wrote {html_path} and {json_path}")
    if not v["ok"]:
        raise typer.Exit(EXIT_SECURITY if v["security_events"] else EXIT_BROKEN)
