"""The ``site-node`` command line: the hospital's side of the deployed mode, and its budget."""

from __future__ import annotations

import logging

import typer

from site_node import node_cli
from site_node.budget_cli import budget

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A hospital's site node.")
node_cli.register_commands(app)
app.command("budget")(budget)


def main() -> None:
    """Console entry point ``site-node``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
