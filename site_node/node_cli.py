"""Site admin commands of the deployed mode: init, start, status.

``register_commands(app)`` adds them to the ``site-node`` Typer root app. Logic lives in
:mod:`site_node.home`, :mod:`site_node.supernode` and :mod:`site_node.preflight`.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from site_node.home import (
    SiteHome,
    SiteHomeError,
    default_site_home,
    init_site_home,
    load_site_home,
)
from site_node.keys import KeyProblem
from site_node.supernode import NodeSettings, NodeStartError, explain, start

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
LEDGER_DELTA = 1e-5  # the consortium policy's default δ
_RUN_MARK = re.compile(r"\[RUN (\d+), ROUND (\d+)\]")
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Site home (default: $SITE_NODE_HOME or ~/.hospital-consortium/site)."
    ),
]


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=1)


def init(
    site_id: Annotated[str, typer.Option("--site-id", help="This hospital's site id.")],
    home: HomeOpt = None,
) -> None:
    """Create the site home: node authentication key and receipt-signing key."""
    try:
        site = init_site_home(home or default_site_home(), site_id)
        prints = site.fingerprints()
    except (SiteHomeError, KeyProblem, OSError) as err:
        raise _fail(err) from err
    console.print(f"Created site home [bold]{site.root}[/] for site [bold]{site_id}[/]")
    console.print("Send these two PUBLIC files to the consortium coordinator:")
    console.print(f"  {site.node_pub}     node key    {prints['node']}")
    console.print(f"  {site.receipt_pub}  receipt key {prints['receipt']}")
    console.print("Read the fingerprints out to the coordinator on a second channel (phone).")
    console.print("Never send node.key or receipt-key.pem (the private keys).")


def start_cmd(
    superlink: Annotated[str, typer.Option("--superlink", help="SuperLink HOST:PORT.")],
    data: Annotated[Path, typer.Option("--data", help="This site's data file (stays here).")],
    ca_cert: Annotated[Path | None, typer.Option("--ca-cert", help="Consortium CA.")] = None,
    home: HomeOpt = None,
    port: Annotated[int, typer.Option(help="Local port of the node's runtime API.")] = 9094,
    detach: Annotated[bool, typer.Option(help="Return once admitted; leave it running.")] = False,
    insecure: Annotated[bool, typer.Option(help="DANGER: plaintext, no authentication.")] = False,
    warm: Annotated[
        bool, typer.Option(help="Fork ClientApps from a pre-imported launcher (faster).")
    ] = True,
) -> None:
    """Start this site's SuperNode with TLS and node authentication."""
    try:
        site = load_site_home(home or default_site_home())
        settings = NodeSettings(superlink, ca_cert, data, port, insecure, warm)
        node = start(site, settings)
    except (SiteHomeError, NodeStartError) as err:
        raise _fail(err) from err
    console.print(f"[green]Connected[/] to {superlink} as site {site.site_id} (pid {node.pid})")
    if detach:
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = node.wait()
        node.stop()
    except KeyboardInterrupt:
        node.stop()
        site.write_status(state="stopped")
        raise typer.Exit(code=130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    reason = explain(site.log_file.read_text(errors="replace")[-4000:])
    site.write_status(state="stopped", reason=reason)
    raise _fail(NodeStartError(f"SuperNode exited (code {code}): {reason}"))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def _ledger_line(site: SiteHome, delta: float = LEDGER_DELTA) -> str:
    """Lifetime ε from the site's privacy ledger (site_node.ledger, from the audit work)."""
    try:
        ledger_module = importlib.import_module("site_node.ledger")
    except ImportError:
        return "unknown (this installation has no privacy ledger)"
    path = site.state_dir / getattr(ledger_module, "LEDGER_FILE", "ledger.sqlite")
    if not path.is_file():
        return "no DP events recorded yet"
    with ledger_module.SiteLedger(path) as ledger:
        runs = len(ledger.run_ids())
        epsilon = ledger.lifetime_epsilon(delta)
    return f"lifetime ε = {epsilon:.3f} at δ = {delta:g} over {runs} run(s)"


def _last_run(site: SiteHome) -> str:
    if not site.log_file.is_file():
        return "never"
    seen = _RUN_MARK.findall(site.log_file.read_text(errors="replace"))
    return f"run {seen[-1][0]}, round {seen[-1][1]}" if seen else "none seen in the log"


def status(home: HomeOpt = None) -> None:
    """Connection state, last run, and (with a ledger) the privacy budget."""
    try:
        site = load_site_home(home or default_site_home())
    except SiteHomeError as err:
        raise _fail(err) from err
    info = site.read_status()
    state = str(info.get("state", "never started"))
    if state == "connected" and not _alive(info.get("pid")):
        state = "stopped (process gone)"
    console.print(f"site      {site.site_id}  ({site.root})")
    console.print(f"state     {state}  superlink={info.get('superlink', '-')}"
                  f"  node={info.get('node_id', '-')}  since={info.get('updated_at', '-')}")
    if info.get("reason"):
        console.print(f"reason    {info['reason']}")
    console.print(f"last run  {_last_run(site)}")
    console.print(f"budget    {_ledger_line(site)}")


def register_commands(app: typer.Typer) -> None:
    """Add the site admin's commands to the ``site-node`` root app."""
    app.command("init")(init)
    app.command("start")(start_cmd)
    app.command("status")(status)
