"""Every command of both command lines explains itself with ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
import typer
import typer.main
from typer.testing import CliRunner

from consortium.cli import app as consortium_app
from site_node.cli import app as site_app
from tests.child import printed_json

runner = CliRunner()


def _commands(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(cmd, click.Group):
        yield path
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path


def _all(app: typer.Typer) -> list[tuple[str, ...]]:
    return list(_commands(typer.main.get_command(app)))


CONSORTIUM = _all(consortium_app)
SITE = _all(site_app)


def test_the_command_sets_are_the_documented_ones() -> None:
    assert set(CONSORTIUM) == {
        (), ("run",), ("compare",), ("export",), ("dashboard",), ("init",), ("serve",),
        ("stop",), ("unit",), ("enroll",), ("sites",), ("revoke",), ("submit",), ("policy",),
        ("policy", "check"), ("policy", "new"), ("task",), ("task", "check"), ("audit",),
        ("audit", "verify"),
        ("audit", "report")}
    assert set(SITE) == {(), ("init",), ("start",), ("stop",), ("unit",), ("status",),
                         ("budget",), ("check-data",)}


@pytest.mark.parametrize("path", CONSORTIUM, ids=lambda p: " ".join(("consortium", *p)))
def test_consortium_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(consortium_app, [*path, "--help"], env={"COLUMNS": "200"},
                           prog_name="consortium")
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('consortium', *path))} " in result.output
    assert "--help" in result.output


@pytest.mark.parametrize("path", SITE, ids=lambda p: " ".join(("site-node", *p)))
def test_site_node_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(site_app, [*path, "--help"], env={"COLUMNS": "200"},
                           prog_name="site-node")
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('site-node', *path))} " in result.output
    assert "--help" in result.output


def test_loading_either_command_line_loads_no_training_or_accounting_library() -> None:
    """``--help``, the audit and the deployment commands start at once: torch, Opacus, Ray,
    Flower's simulation and dp_accounting are loaded only by the commands that use them."""
    code = ("import sys, json\nimport consortium.cli, site_node.cli\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'opacus', 'ray', 'flwr', 'dp_accounting', 'scipy'})))\n")
    assert printed_json(code) == []
