"""The coordinator's command line: ``consortium run | compare | export | dashboard | policy |
task | audit`` and the deployed mode's ``init | serve | enroll | sites | revoke | submit``.

Commands only parse their options and delegate. Every error of the consortium, its policies,
the site node code it runs and the protocol is reported as one clear line and a non-zero exit
(2 for a wrong value, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from consortium.cli import audit, compare, deploy, policy, run, task
from consortium.errors import ConsortiumError
from policies.errors import PolicyError
from site_node.cli.version import HELP_MARKUP, add_version_option
from site_node.errors import SiteNodeError
from site_node.protocol.errors import ProtocolError

app = typer.Typer(
    help="Coordinate a hospital consortium: federated runs with DP-SGD at every site and "
    "SecAgg+ at the server, their export, the live dashboard, policies, audits and the "
    "deployed SuperLink.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
run.register_commands(app)
compare.register_commands(app)
deploy.register_commands(app)
add_version_option(app, "consortium")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(task.task_app, name="task")
app.add_typer(audit.audit_app, name="audit")
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ConsortiumError, PolicyError, SiteNodeError, ProtocolError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2 if isinstance(exc, ValueError) else 1)
