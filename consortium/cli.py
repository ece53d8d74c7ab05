"""The coordinator's command line: ``consortium run | export | dashboard``.

Commands only parse their options and delegate; every error is reported as one clear line and
a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from consortium import deploy_cli
from consortium.keys import default_store_path

app = typer.Typer(
    help="Coordinate a hospital consortium: federated runs with DP-SGD at every site and "
    "SecAgg+ at the server, their export, and the live dashboard.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DEFAULT_STORE = default_store_path()
StoreOpt = Annotated[
    Path, typer.Option("--store", help="Run store (SQLite file).", envvar="HC_STORE")
]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _quiet_libraries(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in ("flwr", "ray", "opacus"):
        logging.getLogger(name).setLevel(level if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore")


@app.command()
def run(
    rounds: Annotated[int, typer.Option(help="Rounds (0: the policy's).", min=0)] = 0,
    store: StoreOpt = DEFAULT_STORE,
    policy: Annotated[
        Path | None, typer.Option(help="Consortium policy YAML (default: the embedded one).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial model.", min=0)] = 0,
    verbose: Annotated[bool, typer.Option(help="Show Flower's protocol log.")] = False,
    federation: Annotated[
        str | None,
        typer.Option(help="Run on this deployed SuperLink connection instead of simulating."),
    ] = None,
) -> None:
    """Run the embedded 4-hospital default on Flower's simulation engine."""
    from consortium.runner import run_simulation_cli

    if federation is not None:
        deploy_cli.run_deployed(federation, store=store, policy=policy, rounds=rounds, seed=seed,
                                verbose=verbose)
        return

    _quiet_libraries(verbose)
    code = run_simulation_cli(
        console, policy=policy, store=store, rounds=rounds, seed=seed, verbose=verbose
    )
    raise typer.Exit(code)


@app.command()
def export(
    store: StoreOpt = DEFAULT_STORE,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: latest).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format.")] = "json",
) -> None:
    """Print a run (default: the latest) as documented JSON."""
    from consortium.export import export_run
    from consortium.store import RunStore, StoreError

    if fmt != "json":
        _fail(f"--format: unsupported format {fmt!r} (supported: json)")
    try:
        with RunStore(store, readonly=True) as rs:
            data = export_run(rs, run_id)
    except StoreError as exc:
        _fail(str(exc))
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def dashboard(
    store: StoreOpt = DEFAULT_STORE,
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the live dashboard for coordinators and auditors (reads the store only)."""
    from dashboard.launch import launch

    console.print(f"Dashboard on [bold]http://{host}:{port}[/] for {store} (Ctrl-C to stop)")
    raise typer.Exit(launch(Path(store), port=port, host=host))


deploy_cli.register_commands(app)


def _register_audit_feature() -> None:
    from consortium.audit_cli import audit_app
    from consortium.policy_cli import policy_app

    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")


_register_audit_feature()


def main() -> None:
    """Console entry point."""
    app()
