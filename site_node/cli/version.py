"""``--version`` for both command lines: the installed distribution's version."""

# No ``from __future__ import annotations``: typer evaluates the option's annotation, which
# names a local callback.

from importlib import metadata
from typing import Annotated, Final

import typer

DISTRIBUTION = "hospital-consortium"
#: Help texts as Markdown: a docstring's paragraphs are reflowed to the terminal's width (typer's
#: default, "rich", kept every line break of the source, breaking sentences mid-line).
HELP_MARKUP: Final = "markdown"


def installed_version() -> str:
    """The version of the installed ``hospital-consortium`` (``unknown`` when not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def add_version_option(app: typer.Typer, prog: str) -> None:
    """Give ``app`` a ``--version`` option that prints ``PROG VERSION`` and exits."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {installed_version()}")
            raise typer.Exit()

    @app.callback()
    def _options(
        version: Annotated[bool, typer.Option(
            "--version", help="Print the version and exit.", callback=show,
            is_eager=True)] = False,
    ) -> None:
        pass
