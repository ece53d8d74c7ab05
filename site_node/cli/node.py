"""Site admin commands of the deployed mode: ``init``, ``start``, ``status``.

``register_commands(app)`` adds them to the ``site-node`` app. Logic lives in
:mod:`site_node.home`, :mod:`site_node.deployment.supernode` and
:mod:`site_node.privacy.budget`; errors propagate to the app's one handler.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from site_node.deployment.processes import alive
from site_node.deployment.supernode import NodeSettings, explain, start
from site_node.errors import NodeStartError
from site_node.home import SiteHome, default_site_home, init_site_home, load_site_home
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger

console = Console(soft_wrap=True)
_RUN_MARK = re.compile(r"\[RUN (\d+), ROUND (\d+)\]")
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home",
                 help="Site home (default: $SITE_NODE_HOME or ~/.hospital-consortium/site)."),
]


def init(
    site_id: Annotated[str, typer.Option("--site-id", help="This hospital's site id.")],
    home: HomeOpt = None,
) -> None:
    """Create the site home: node authentication key and receipt-signing key."""
    site = init_site_home(home or default_site_home(), site_id)
    prints = site.fingerprints()
    console.print(f"Created site home [bold]{site.root}[/] for site [bold]{site_id}[/]")
    console.print("Send these two PUBLIC files to the consortium coordinator:")
    console.print(f"  {site.node_pub}     node key    {prints['node']}")
    console.print(f"  {site.receipt_pub}  receipt key {prints['receipt']}")
    console.print("Read the fingerprints out to the coordinator on a second channel (phone).")
    console.print("Never send node.key or receipt-key.pem (the private keys).")


def start_cmd(
    superlink: Annotated[str, typer.Option("--superlink", help="SuperLink HOST:PORT.")],
    data: Annotated[Path, typer.Option(
        "--data", help="This site's data file or folder (stays here).")],
    task: Annotated[Path, typer.Option(
        "--task", help="The consortium's task file you agreed to: the data are checked against "
        "it now, and the node refuses to train any other task.")],
    ca_cert: Annotated[Path | None, typer.Option("--ca-cert", help="Consortium CA.")] = None,
    home: HomeOpt = None,
    port: Annotated[int, typer.Option(help="Local port of the node's runtime API.",
                                      min=1, max=65535, metavar="PORT")] = 9094,
    detach: Annotated[bool, typer.Option(help="Return once admitted; leave it running.")] = False,
    insecure: Annotated[bool, typer.Option(help="DANGER: plaintext, no authentication.")] = False,
    warm: Annotated[
        bool, typer.Option(help="Fork ClientApps from a pre-imported launcher (faster).")
    ] = True,
) -> None:
    """Start this site's SuperNode with TLS and node authentication (checks the data against the
    task first)."""
    site = load_site_home(home or default_site_home())
    settings = NodeSettings(superlink, ca_cert, data, task, port, insecure, warm)
    node = start(site, settings)
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
    reason = explain(site.log_file.read_text(errors="replace")[-4000:], insecure=insecure)
    site.write_status(state="stopped", reason=reason)
    raise NodeStartError(f"SuperNode exited (code {code}): {reason}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def budget_line(site: SiteHome) -> str:
    """The site's lifetime budget statement (as ``site-node budget`` and receipts give it)."""
    if not (site.state_dir / LEDGER_FILE).is_file():
        return "no DP events recorded yet"
    from site_node.privacy import budget  # loads Opacus' accountant

    with SiteLedger.in_state_dir(site.state_dir, readonly=True) as ledger:
        life = budget.lifetime(ledger)
    return "no DP events recorded yet" if life is None else f"lifetime {life}"


def _last_run(site: SiteHome) -> str:
    if not site.log_file.is_file():
        return "never"
    seen = _RUN_MARK.findall(site.log_file.read_text(errors="replace"))
    return f"run {seen[-1][0]}, round {seen[-1][1]}" if seen else "none seen in the log"


def status(home: HomeOpt = None) -> None:
    """Connection state, last run, and the privacy budget."""
    site = load_site_home(home or default_site_home())
    info = site.read_status()
    state = str(info.get("state", "never started"))
    if state == "connected" and not alive(info.get("pid")):
        state = "stopped (process gone)"
    console.print(f"site      {site.site_id}  ({site.root})")
    console.print(f"state     {state}  superlink={info.get('superlink', '-')}"
                  f"  node={info.get('node_id', '-')}  since={info.get('updated_at', '-')}")
    if info.get("reason"):
        console.print(f"reason    {info['reason']}")
    console.print(f"last run  {_last_run(site)}")
    console.print(f"budget    {budget_line(site)}")


def register_commands(app: typer.Typer) -> None:
    """Add the site admin's commands to the ``site-node`` app."""
    app.command("init")(init)
    app.command("start")(start_cmd)
    app.command("status")(status)
