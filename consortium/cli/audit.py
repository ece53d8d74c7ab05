"""``consortium audit``: verify the audit trail and write the auditor's report.

``verify`` exits 0 only when everything holds; 1 when a record is broken (chain, signature, the
log's end, a store row the log does not cover, receipt, ε, ceiling); 3 when the trail is intact
but records security events (each is named). The consortium key is pinned by default to the
consortium home's; the log's end is checked against the signed head beside the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from consortium.cli.options import StoreOpt, store_path
from consortium.errors import AuditVerificationError, SecurityEventsFound
from consortium.home import open_home
from consortium.store.records import MODE_DEMO
from site_node.protocol.keys import fingerprint, load_public_key_file, load_signing_key, public_path

if TYPE_CHECKING:  # the audit's modules load dp_accounting: only for the commands that use them
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from consortium.audit.verify import VerificationResult

audit_app = typer.Typer(help="Verify and report the privacy audit trail.", no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
EXIT_BROKEN, EXIT_SECURITY = 1, 3

RunOpt = Annotated[str | None, typer.Option(
    "--run", help="Run id (verify: every run; report: the latest).")]
HeadOpt = Annotated[Path | None, typer.Option(
    "--head", help="The log's signed head file (default: the one beside the store, e.g. "
                   "runs-audit-head.json in the consortium home).")]
NoHeadOpt = Annotated[bool, typer.Option(
    "--no-head", help="Accept a store without a signed head (one found is still checked): "
                      "entries cut off the log's end then go undetected.")]


def _print_result(result: VerificationResult) -> None:
    console.print(f"consortium key fingerprint: {result.consortium_fingerprint}")
    for site, fps in sorted(result.site_fingerprints.items()):
        console.print(f"  {site}: {', '.join(fps)}")
    demo = [rid for rid, mode in result.modes.items() if mode == MODE_DEMO]
    if demo:
        console.print(f"[yellow]{len(demo)} run(s) are local demonstrations: the demonstration "
                      "created the sites' keys, so their receipts prove only what one machine "
                      "attests.[/]")


def _pinned_key(given: Path | None) -> tuple[Ed25519PublicKey | None, str]:
    """The consortium key to pin: ``--consortium-key``, else the consortium home's, if any."""
    if given is not None:
        return load_public_key_file(given), f"pinned by --consortium-key {given}"
    private = open_home().signing_key_file
    public = public_path(private)
    if public.is_file():
        return load_public_key_file(public), f"pinned to this consortium home's key ({public})"
    if private.is_file():
        return load_signing_key(private).public_key(), (
            f"pinned to this consortium home's key ({private})")
    return None, ("[bold yellow]NOT PINNED[/]: this consortium home has no key, so the key the "
                  "log's first entry enrolled is trusted; compare its fingerprint with the "
                  "consortium's, obtained out of band, or pass --consortium-key")


def _print_end(result: VerificationResult) -> None:
    if result.head_path is None:
        console.print("[bold yellow]WARNING: no signed audit head was checked (--no-head): "
                      "entries cut off the end of the log cannot be detected.[/]")
        return
    extra = (f"; {result.beyond_head} entries were appended after it" if result.beyond_head
             else "")
    console.print(f"the log reaches its signed head (seq {result.head_seq}, "
                  f"{result.head_path}){extra}", highlight=False)


def _progress(stage: str, done: int, total: int) -> None:
    """Progress on stderr: the chain once, runs about every tenth of the way."""
    if stage == "chain" or done == total or done % max(1, total // 10) == 0:
        errors.print(f"  verified {stage}: {done}/{total}", highlight=False)


@audit_app.command("verify")
def verify(
    store: StoreOpt = None,
    run: RunOpt = None,
    consortium_key: Annotated[Path | None, typer.Option(
        "--consortium-key", help="Pin this consortium public key (PEM) (default: the consortium "
                                 "home's key, if the home has one).")] = None,
    head: HeadOpt = None,
    no_head: NoHeadOpt = False,
) -> None:
    """Check the hash chain and its signed head, every signature, every store row against the
    log, every ε and ceiling, and security events."""
    from consortium.audit.verify import verify_store

    path = store_path(store)
    pinned, pin_note = _pinned_key(consortium_key)
    console.print(f"consortium key {pin_note}"
                  + (f": {fingerprint(pinned)}" if pinned is not None else ""), highlight=False)
    try:
        result = verify_store(path, run_id=run, consortium_key=pinned, head=head,
                              require_head=not no_head, progress=_progress)
    except SecurityEventsFound as exc:
        console.print(f"[bold red]AUDIT VERIFICATION FAILED: SECURITY EVENTS[/] for {path}:")
        for event in getattr(exc.result, "security_events", []):
            console.print(f"  entry {event.seq} (run {event.run_id}): {event.reason}",
                          highlight=False, markup=False)
        raise typer.Exit(EXIT_SECURITY) from None
    except AuditVerificationError as exc:
        console.print(f"[bold red]AUDIT VERIFICATION FAILED[/] ({type(exc).__name__}) "
                      f"for {escape(str(path))}:\n{escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_BROKEN) from None
    console.print(f"[bold green]verified[/] {path}: {result.entries} log entries, chain and "
                  f"signatures intact; {len(result.checks)} receipts over {len(result.runs)} "
                  f"run(s), every store row covered by the log, every ε reproduced by "
                  "dp_accounting within 1%, no ceiling passed, no security event.")
    _print_end(result)
    _print_result(result)


@audit_app.command("report")
def report(
    out: Annotated[Path, typer.Option("--out", help="Directory for the HTML and JSON report.")],
    store: StoreOpt = None,
    run: RunOpt = None,
    head: HeadOpt = None,
    no_head: NoHeadOpt = False,
) -> None:
    """Write the auditor's report of a run as self-contained HTML and JSON."""
    from consortium.audit.report import build_report, write_report

    data = build_report(store_path(store), run, head=head, require_head=not no_head)
    html_path, json_path = write_report(data, out)
    v = data["verification"]
    status = "verified" if v["ok"] else f"VERIFICATION FAILED ({v['error_kind']})"
    console.print(f"{status}: wrote {html_path} and {json_path}")
    if not v["ok"]:
        raise typer.Exit(EXIT_SECURITY if v["security_events"] else EXIT_BROKEN)
