"""The ``site-node`` command line: a hospital's node, its data and its privacy budget.

Commands only parse their options and delegate. Every error of the site node, its policies and
its protocol is reported as one line naming what is wrong, with a non-zero exit.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from policies.errors import PolicyError
from site_node.cli import budget, data, node
from site_node.cli.version import HELP_MARKUP, add_version_option
from site_node.errors import SiteNodeError
from site_node.protocol.errors import ProtocolError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=HELP_MARKUP,
                  help="A hospital's site node: its keys, its SuperNode, its data and its privacy "
                  "budget.")
node.register_commands(app)
budget.register_commands(app)
data.register_commands(app)
add_version_option(app, "site-node")
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    """Console entry point ``site-node``."""
    # Warnings only: the commands print what the admin needs (a log line per key made or
    # process started was noise); the SuperNode's own output goes to its log file.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (SiteNodeError, PolicyError, ProtocolError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2 if isinstance(exc, ValueError) else 1)


if __name__ == "__main__":
    main()
