"""``site-node check-data``: validate this site's data against the consortium's task, alone.

It runs exactly the checks the node runs before every round (:mod:`site_node.data`) and prints
a summary a site admin can send to the coordinator without exposing any record: row count, the
train/test split, the class balance, missing rates per column, the image size. A table is
checked a chunk of rows at a time, with progress on stderr (:mod:`.data_progress`). With
``--policy`` (the consortium policy) it also checks what the policy implies for these data, as
the node does before every round: training examples at most ``secagg.max_weight``, expected
batch q·N >= 1; without it, it says those checks were not made. Exit 0 when the data fit; exit
2 with the report (column or file, rule, first offending rows) when not.
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
from site_node.settings import features_folder

# Data reports quote file names, columns and patterns: printed as they are, never as markup.
console = Console(soft_wrap=True, highlight=False, markup=False)


NOT_CHECKED = ("not checked (no --policy): training examples vs the policy's secagg.max_weight, "
               "expected batch q·N >= 1")


def policy_problems(policy: Path, num_train: int, num_patients: int | None = None
                    ) -> list[str]:
    """What the consortium policy implies for ``num_train`` training examples (of
    ``num_patients`` patients, for a patient-level task): the problems the node would refuse
    every round for (the same limits it checks before training)."""
    p = load_policy(policy).policy
    problems = []
    max_weight = p.secagg.max_weight
    if num_train > max_weight:
        problems.append(f"data: {num_train} training examples exceed secagg.max_weight "
                        f"{max_weight:g} of {policy} (SecAgg+ would overflow the site's weight; "
                        "the node refuses every round)")
    q = float(p.dp.sample_rate)
    if num_patients is not None and q * num_patients < 1:
        problems.append(f"data: too few patients: {num_patients} training patient(s) at "
                        f"sample rate {q:g} give an expected batch of {q * num_patients:.2f} "
                        "patients < 1")
    elif q * num_train < 1:
        problems.append(f"data: too few rows: {num_train} training example(s) at sample rate "
                        f"{q:g} give an expected batch of {q * num_train:.2f} < 1")
    return problems


def check_data(
    task: Annotated[Path, typer.Option("--task", help="The consortium's task file.")],
    data: Annotated[Path, typer.Option("--data", help="This site's data file or folder.")],
    policy: Annotated[Path | None, typer.Option(
        "--policy", help="The consortium policy: also check the training examples against its "
        "secagg.max_weight and its sampling rate (q·N >= 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    features_dir: Annotated[Path | None, typer.Option(
        "--features-dir", metavar="DIR",
        help="Folder where the task's pretrained backbone file is looked up (default: beside "
        "the data), as `site-node start --features-dir`.")] = None,
) -> None:
    """Check this site's data against the task; print a summary that exposes no record."""
    loaded = load_task(task)
    folder = None if features_dir is None else features_folder(features_dir,
                                                                 field="--features-dir")
    result: dict[str, Any] = {"task": loaded.name, "task_sha256": loaded.sha256,
                              "data": str(data)}
    if folder is not None:
        result["features_dir"] = str(folder)
    try:
        with data_progress() as progress:
            site = load_site_data(loaded, data, progress=progress, features_dir=folder)
    except DataRefused as refused:
        result |= {"ok": False, "report": refused.report.as_dict()}
        lines = [f"The data do NOT fit task {loaded.name}:", *refused.report.lines()]
    else:
        unit = loaded.task.privacy_unit.unit
        problems = policy_problems(
            policy, site.num_train, site.num_patients if unit == "patient" else None
        ) if policy is not None else []
        from site_node.cli.data_unit import unit_statement  # loads Opacus' accountant

        unit_lines, unit_json = unit_statement(loaded, site, policy)
        result |= {"ok": not problems, "summary": site.summary.as_dict(), "privacy": unit_json,
                   "policy": str(policy) if policy is not None else None,
                   "policy_checks": "made" if policy is not None else NOT_CHECKED}
        lines = site.summary.lines() + unit_lines
        if problems:
            result["report"] = {"problems": problems}
            lines += [f"The data do NOT fit the policy: {p}" for p in problems]
        else:
            lines.append(f"The data fit task {loaded.name}.")
            lines.append(f"The data fit the policy {policy} (secagg.max_weight, expected "
                         "batch)." if policy is not None else f"Policy limits {NOT_CHECKED}.")
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
