"""``site-node check-data``: validate this site's data against the consortium's task, alone.

It runs exactly the checks the node runs before every round (:mod:`site_node.data`) and prints
a summary a site admin can send to the coordinator without exposing any record: row count, the
train/test split, the class balance, missing rates per column, the image size. A table is
checked a chunk of rows at a time, with progress on stderr (:mod:`.data_progress`). Exit 0
when the data fit the task; exit 2 with the report (column or file, rule, first offending rows)
when not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from policies.loader import load_policy
from policies.task_loader import load_task
from site_node.cli.data_progress import data_progress
from site_node.data import DataRefused, load_site_data

console = Console(soft_wrap=True, highlight=False)


def _batch_problem(policy: Path | None, num_train: int) -> str | None:
    """Why the consortium policy's sampling rate cannot train on ``num_train`` examples."""
    if policy is None:
        return None
    q = float(load_policy(policy).policy.dp.sample_rate)
    if q * num_train >= 1:
        return None
    return (f"data: too few rows: {num_train} training example(s) at sample rate {q:g} give an "
            f"expected batch of {q * num_train:.2f} < 1")


def check_data(
    task: Annotated[Path, typer.Option("--task", help="The consortium's task file.")],
    data: Annotated[Path, typer.Option("--data", help="This site's data file or folder.")],
    policy: Annotated[Path | None, typer.Option(
        "--policy", help="Also check the consortium policy's sampling rate (q·N >= 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check this site's data against the task; print a summary that exposes no record."""
    loaded = load_task(task)
    result: dict[str, Any] = {"task": loaded.name, "task_sha256": loaded.sha256,
                              "data": str(data)}
    try:
        with data_progress() as progress:
            site = load_site_data(loaded, data, progress=progress)
    except DataRefused as refused:
        result |= {"ok": False, "report": refused.report.as_dict()}
        lines = [f"The data do NOT fit task {loaded.name}:", *refused.report.lines()]
    else:
        batch = _batch_problem(policy, site.num_train)
        result |= {"ok": batch is None, "summary": site.summary.as_dict()}
        lines = site.summary.lines()
        if batch is not None:
            result["report"] = {"problems": [batch]}
            lines += [f"The data do NOT fit the policy's sampling: {batch}"]
        else:
            lines.append(f"The data fit task {loaded.name}.")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for line in lines:
            console.print(line)
    if not result["ok"]:
        raise typer.Exit(code=2)


def register_commands(app: typer.Typer) -> None:
    """Add ``check-data`` to the ``site-node`` app."""
    app.command("check-data")(check_data)
