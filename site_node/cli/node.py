"""Site admin commands of the deployed mode: ``init``, ``start``, ``stop``, ``unit``, ``status``.

``register_commands(app)`` adds them to the ``site-node`` app. Logic lives in
:mod:`site_node.home`, :mod:`site_node.deployment.supernode` and
:mod:`site_node.privacy.budget`; errors propagate to the app's one handler.

``site-node stop`` exits 0 when it stopped the node, and :data:`NOT_RUNNING` (3) when no node
of the home was running (a stale record is reported, never signalled).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from site_node.deployment import units
from site_node.deployment.detached import node_running, stop_node
from site_node.deployment.supernode import NodeSettings, explain, start
from site_node.device import AUTO, parse_device
from site_node.errors import NodeStartError, SiteHomeError
from site_node.home import (
    SiteHome,
    default_site_home,
    demo_site_home,
    init_site_home,
    load_site_home,
)
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from site_node.settings import MAX_PHYSICAL_BATCH_LIMIT

console = Console(soft_wrap=True)
#: ``site-node stop``'s exit code when nothing of the node was running.
NOT_RUNNING = 3
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


SuperlinkOpt = Annotated[str, typer.Option("--superlink", help="SuperLink HOST:PORT.")]
DataOpt = Annotated[Path, typer.Option(
    "--data", help="This site's data file or folder (stays here).")]
TaskOpt = Annotated[Path, typer.Option(
    "--task", help="The consortium's task file you agreed to: the data are checked against "
    "it now, and the node refuses to train any other task.")]
CaOpt = Annotated[Path | None, typer.Option("--ca-cert", help="Consortium CA.")]
PortOpt = Annotated[int, typer.Option(help="Local port of the node's runtime API.",
                                      min=1, max=65535, metavar="PORT")]
WarmOpt = Annotated[
    bool, typer.Option(help="Fork ClientApps from a pre-imported launcher (faster).")
]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="Where the site trains: auto (a GPU when there is one), cpu, cuda or "
    "cuda:N.", metavar="DEVICE")]
PhysicalOpt = Annotated[int | None, typer.Option(
    "--max-physical-batch", min=1, max=MAX_PHYSICAL_BATCH_LIMIT, metavar="N",
    help="Largest batch computed at once (splits larger Poisson batches; ε unchanged).")]
FeaturesDirOpt = Annotated[Path | None, typer.Option(
    "--features-dir", metavar="DIR",
    help="Folder where the task's pretrained backbone file is looked up (default: beside the "
    "data).")]


def start_cmd(
    superlink: SuperlinkOpt,
    data: DataOpt,
    task: TaskOpt,
    ca_cert: CaOpt = None,
    home: HomeOpt = None,
    port: PortOpt = 9094,
    detach: Annotated[bool, typer.Option(help="Return once admitted; leave it running.")] = False,
    insecure: Annotated[bool, typer.Option(help="DANGER: plaintext, no authentication.")] = False,
    warm: WarmOpt = True,
    device: DeviceOpt = AUTO,
    max_physical_batch: PhysicalOpt = None,
    features_dir: FeaturesDirOpt = None,
) -> None:
    """Start this site's SuperNode with TLS and node authentication (checks the data against the
    task, and the device, first)."""
    site = load_site_home(home or default_site_home())
    settings = NodeSettings(superlink, ca_cert, data, task, port, insecure, warm,
                            device=parse_device(device, field="--device"),
                            max_physical_batch=max_physical_batch, features_dir=features_dir)
    node = start(site, settings)
    console.print(f"[green]Connected[/] to {superlink} as site {site.site_id} (pid {node.pid})")
    if detach:
        console.print(f"Detached; `site-node stop --home {site.root}` stops it.")
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


def stop(
    home: HomeOpt = None,
    grace: Annotated[float, typer.Option(
        help="Seconds to wait after SIGTERM before SIGKILL.", min=0.0, metavar="SECONDS")] = 10.0,
) -> None:
    """Stop the home's detached node: its SuperNode, launcher and helpers (SIGTERM, then SIGKILL
    after --grace). Exit code 3 if none was running."""
    site = load_site_home(home or default_site_home())
    report = stop_node(site, grace_s=grace)
    for line in report.stale:
        console.print(f"stale record ({site.status_file}): {line}", highlight=False)
    if report.stopped is None:
        console.print(f"No node of site {site.site_id} is running ({site.root}).")
        raise typer.Exit(code=NOT_RUNNING)
    console.print(f"Stopped site {site.site_id}: {report.stopped.describe()}", highlight=False)


def unit(
    superlink: SuperlinkOpt,
    data: DataOpt,
    task: TaskOpt,
    ca_cert: CaOpt = None,
    home: HomeOpt = None,
    port: PortOpt = 9094,
    warm: WarmOpt = True,
    device: DeviceOpt = AUTO,
    max_physical_batch: PhysicalOpt = None,
    features_dir: FeaturesDirOpt = None,
    user: Annotated[str | None, typer.Option(
        help="User the service runs as (default: you); it must own the site home.")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Write the unit here (e.g. /etc/systemd/system/site-node.service); default: "
        "print it.")] = None,
) -> None:
    """Write a systemd unit that runs this node as a service (restart on failure, journal)."""
    site = load_site_home(home or default_site_home())
    settings = NodeSettings(superlink, ca_cert, data, task, port, False, warm,
                            device=parse_device(device, field="--device"),
                            max_physical_batch=max_physical_batch, features_dir=features_dir)
    text = units.unit_file(units.node_unit(site, settings, user=user or units.current_user()))
    written = units.write_unit(text, output)
    if written is None:
        typer.echo(text, nl=False)  # the file itself, never wrapped
    else:
        console.print(f"Wrote {written}; then: systemctl daemon-reload && "
                      f"systemctl enable --now {written.stem}")


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
    """The last run the site's ledger records (the consortium's run id), else the last the
    SuperNode's log names (only Flower's numeric id is there)."""
    if (site.state_dir / LEDGER_FILE).is_file():
        with SiteLedger.in_state_dir(site.state_dir, readonly=True) as ledger:
            rows = [(e.recorded_at, e.run_id, e.round, "trained") for e in ledger.events()]
            rows += [(r.recorded_at, r.run_id, r.round, "refused") for r in ledger.refusals()]
        if rows:
            at, run_id, rnd, what = max(rows)
            return f"run {run_id}, round {rnd} {what} at {at}"
    if not site.log_file.is_file():
        return "never"
    seen = _RUN_MARK.findall(site.log_file.read_text(errors="replace"))
    return (f"Flower run {seen[-1][0]}, round {seen[-1][1]} (nothing trained or refused yet)"
            if seen else "none seen in the log")


def _status_home(home: Path | None, demo_site: str | None) -> SiteHome:
    if home is not None and demo_site is not None:
        raise SiteHomeError("give --home or --demo-site, not both")
    if demo_site is not None:
        root = demo_site_home(demo_site)
        if not (root / "site.toml").is_file():
            raise SiteHomeError(f"no demonstration site {demo_site!r}: {root} is not a site home "
                                "(a `consortium run` creates the homes of the sites it plays)")
        return load_site_home(root)
    return load_site_home(home or default_site_home())


def status(
    home: HomeOpt = None,
    demo_site: Annotated[str | None, typer.Option(
        "--demo-site", help="A site the local demonstration (`consortium run`) played.")] = None,
) -> None:
    """Connection state, last run, and the privacy budget."""
    site = _status_home(home, demo_site)
    info = site.read_status()
    state = str(info.get("state", "never started"))
    if state == "connected" and not node_running(site):
        state = "stopped (process gone)"
    console.print(f"site      {site.site_id}  ({site.root})")
    console.print(f"state     {state}  superlink={info.get('superlink', '-')}"
                  f"  node={info.get('node_id', '-')}  since={info.get('updated_at', '-')}")
    if info.get("reason"):
        console.print(f"reason    {info['reason']}")
    console.print(f"device    {info.get('device', '-')}", highlight=False)
    if info.get("features_dir"):
        console.print(f"features  {info['features_dir']} (backbone folder)", highlight=False)
    console.print(f"last run  {_last_run(site)}", highlight=False)
    console.print(f"budget    {budget_line(site)}")


def register_commands(app: typer.Typer) -> None:
    """Add the site admin's commands to the ``site-node`` app."""
    app.command("init")(init)
    app.command("start")(start_cmd)
    app.command("stop")(stop)
    app.command("unit")(unit)
    app.command("status")(status)
