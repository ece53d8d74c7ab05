"""``site-node``: the hospital-side command line (minimal; the lead's version supersedes it)."""

from __future__ import annotations

import typer

from site_node.budget_cli import budget

app = typer.Typer(help="A hospital's site node.", no_args_is_help=True)
app.command("budget")(budget)


@app.callback()
def _root() -> None:
    """A hospital's site node."""


def main() -> None:
    """Entry point of ``site-node``."""
    app()
