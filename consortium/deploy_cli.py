"""Coordinator commands of the deployed mode: init, enroll, sites, revoke, serve, run-deployed.

``register_commands(app)`` adds them to the ``consortium`` Typer root app; this module also runs
standalone (``python -m consortium.deploy_cli ...``). Logic lives in home, certificates,
enrollment, superlink and deployment; this module only parses options and prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consortium import deployment, enrollment, superlink
from consortium.certificates import CertificateProblem
from consortium.home import DEFAULT_PORT, HomeError, default_home, init_home, load_home
from consortium.keys import default_store_path
from site_node.keys import KeyProblem

console = Console(soft_wrap=True)
PROGRESS_MARKS = ("Successfully started run", "Secure aggregation", "aggregate_", "[Stage", "rror")
err_console = Console(stderr=True, soft_wrap=True)
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Consortium home (default: $CONSORTIUM_HOME or ~/.hospital-consortium/consortium).",
    ),
]
_FAILURES = (
    HomeError, CertificateProblem, KeyProblem, enrollment.EnrollmentError,
    superlink.SuperLinkError, deployment.DeploymentError,
)


def _fail(err: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=1)


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the home in.")],
    host: Annotated[list[str] | None, typer.Option("--host", help="DNS name sites dial.")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address sites dial.")] = None,
    port: Annotated[int, typer.Option(help="SuperLink port.")] = DEFAULT_PORT,
    bind: Annotated[str, typer.Option(help="Address the SuperLink binds to.")] = "127.0.0.1",
) -> None:
    """Create a consortium home: CA, SuperLink certificate, signing key, policy, config."""
    hosts, ips = host or [], ip or []
    if not hosts and not ips:
        hosts, ips = ["localhost"], ["127.0.0.1"]
    try:
        home = init_home(directory, hosts, ips, port=port, bind_host=bind)
    except (HomeError, CertificateProblem, ValueError) as err:
        raise _fail(err) from err
    console.print(f"Created consortium home [bold]{home.root}[/]")
    console.print(f"  SuperLink address : {home.address} (binds {home.bind_host})")
    console.print(f"  CA for the sites  : {home.ca_cert}")
    console.print(f"  Next: export CONSORTIUM_HOME={home.root}; consortium serve")


def enroll(
    site_id: Annotated[str, typer.Argument(help="The site's id, e.g. cleveland.")],
    node_key: Annotated[Path, typer.Option("--node-key", help="The site's node.pub.")],
    receipt_key: Annotated[
        Path, typer.Option("--receipt-key", help="The site's receipt-key.pub.pem.")
    ],
    home: HomeOpt = None,
    store: Annotated[
        Path | None,
        typer.Option(help="Run store whose audit log gets the receipt key.", envvar="HC_STORE"),
    ] = None,
) -> None:
    """Admit a site: register its node key with the SuperLink, enrol its receipt key."""
    if store is None:

        store = default_store_path()
    try:
        the_home = load_home(home or default_home())
        member = enrollment.enroll(the_home, site_id, node_key, receipt_key, store)
    except _FAILURES as err:
        raise _fail(err) from err
    console.print(f"Enrolled [bold]{member.site_id}[/] as node {member.node_id}")
    console.print(f"  node key    {member.node_fingerprint}")
    console.print(f"  receipt key {member.receipt_fingerprint}")
    console.print("  Compare both fingerprints with the site admin before they start the node.")


def sites(home: HomeOpt = None) -> None:
    """List members: site id, key fingerprints, enrolment time, status."""
    try:
        members = enrollment.load_members(load_home(home or default_home()))
    except HomeError as err:
        raise _fail(err) from err
    table = Table("site", "node key", "receipt key", "enrolled at", "status")
    for m in sorted(members.values(), key=lambda m: m.site_id):
        status = m.status if m.revoked_at is None else f"{m.status} {m.revoked_at}"
        table.add_row(m.site_id, m.node_fingerprint, m.receipt_fingerprint, m.enrolled_at, status)
    console.print(table)


def revoke(
    site_id: Annotated[str, typer.Argument(help="The site to remove.")], home: HomeOpt = None
) -> None:
    """Revoke a site: unregister its node key (it can no longer connect)."""
    try:
        member = enrollment.revoke(load_home(home or default_home()), site_id)
    except _FAILURES as err:
        raise _fail(err) from err
    console.print(f"Revoked [bold]{member.site_id}[/] (node {member.node_id}) {member.revoked_at}")


def serve(
    home: HomeOpt = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="DANGER: plaintext, no node authentication.")
    ] = False,
) -> None:
    """Run the SuperLink with TLS and node authentication (foreground; Ctrl-C stops it)."""
    if insecure:
        err_console.print(f"[bold red]{superlink.INSECURE_WARNING}[/]")
    try:
        the_home = load_home(home or default_home())
        console.print(f"Serving on {the_home.bind_host}:{the_home.port} (TLS, node auth)")
        code = superlink.run_foreground(the_home, insecure=insecure)
    except _FAILURES as err:
        raise _fail(err) from err
    raise typer.Exit(code=code)


def run_deployed(
    federation: Annotated[str, typer.Option("--federation", help="SuperLink connection name.")],
    home: HomeOpt = None,
    store: Annotated[
        Path | None,
        typer.Option(help="Run store (default: the simulation runs' store).", envvar="HC_STORE"),
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the home's).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds (default: the policy's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    verbose: Annotated[bool, typer.Option(help="Show Flower's whole log.")] = False,
) -> None:
    """Submit the consortium run to a running SuperLink and stream its progress."""
    def show(line: str) -> None:
        if verbose or any(mark in line for mark in PROGRESS_MARKS):
            console.print(line, highlight=False, markup=False)

    if store is None:

        store = default_store_path()
    try:
        the_home = load_home(home or default_home())
        config = deployment.run_config(store, policy or the_home.policy, rounds, seed)
        deployment.submit(the_home, federation, config, on_line=show)
    except _FAILURES as err:
        raise _fail(err) from err
    console.print(f"Run finished; results in {store} (`consortium export --store {store}`)")


def register_commands(app: typer.Typer) -> None:
    """Add the coordinator's deployment commands to the ``consortium`` root app."""
    for fn in (init, enroll, sites, revoke, serve):
        app.command(fn.__name__)(fn)
    app.command("run-deployed")(run_deployed)


def main() -> None:
    """Standalone entry point (``python -m consortium.deploy_cli``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    register_commands(app)
    app()


if __name__ == "__main__":
    main()
