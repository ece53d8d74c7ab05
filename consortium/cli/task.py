"""``consortium task check``: validate task files and show what each one declares.

Registered in :mod:`consortium.cli` with ``app.add_typer(task_app, name="task")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from policies.task import TabularTask
from policies.task_loader import LoadedTask, load_task

task_app = typer.Typer(help="Validate consortium task files.", no_args_is_help=True)
# Task reports quote columns, levels and patterns: printed as they are, never as markup.
console = Console(highlight=False, soft_wrap=True, markup=False)


def describe(loaded: LoadedTask) -> dict[str, Any]:
    """What a reviewer checks first: name, hash, modality, classes, model, inputs."""
    t = loaded.task
    out: dict[str, Any] = {
        "source": loaded.source, "name": t.name, "sha256": loaded.sha256,
        "modality": t.modality, "preprocessing": t.preprocessing,
        "classes": list(t.label.names), "min_classes_per_site": t.label.min_classes_per_site,
        "model": t.model.family, "input_shape": list(t.input_shape),
    }
    if isinstance(t, TabularTask):
        out |= {"label_column": t.label.column, "columns": len(t.columns),
                "features": list(t.feature_names())}
    return out


@task_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Task YAML files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate task files; exit 2 naming the file and field of the first invalid one."""
    described = [describe(load_task(f)) for f in files]
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    for d in described:
        console.print(f"task {d['name']} ({d['source']}): sha256 {d['sha256']}")
        console.print(f"  {d['modality']}, preprocessing {d['preprocessing']}, model "
                      f"{d['model']}, input {tuple(d['input_shape'])}, classes "
                      f"{', '.join(d['classes'])} (at least {d['min_classes_per_site']} per "
                      "site)")
