"""``consortium``: the consortium command line (minimal; the lead's version supersedes it).

Only the sub-apps of the audit feature are registered here: ``consortium policy`` and
``consortium audit``.
"""

from __future__ import annotations

import typer

from consortium.audit_cli import audit_app
from consortium.policy_cli import policy_app

app = typer.Typer(help="Privacy-preserving federated training for hospital consortia.",
                  no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Entry point of ``consortium``."""
    app()


if __name__ == "__main__":
    main()
