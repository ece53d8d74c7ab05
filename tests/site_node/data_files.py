"""The example's data files, and edited copies of them, for tests of what a site refuses."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from policies.example import load_example
from policies.task_loader import LoadedTask, load_task

Row = dict[str, str]


def heart_task() -> LoadedTask:
    """The heart-disease example's task."""
    return load_task(load_example("heart-disease").task)


def example_file(site: str = "hungary", example: str = "heart-disease") -> Path:
    """A site's data file in an embedded example."""
    return load_example(example).data[site]


def edited_csv(tmp_path: Path, site: str, edit: Callable[[int, Row], Row | None],
               name: str = "data.csv") -> Path:
    """The site's example CSV with ``edit(i, row)`` applied to its ``i``-th row (returning None
    drops the row)."""
    out = tmp_path / name
    with example_file(site).open(newline="") as src, out.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or ()))
        writer.writeheader()
        for i, row in enumerate(reader):
            edited = edit(i, dict(row))
            if edited is not None:
                writer.writerow(edited)
    return out


def with_value(tmp_path: Path, site: str, column: str, value: str) -> Path:
    """The site's example CSV with ``column`` of its first row set to ``value``."""
    return edited_csv(tmp_path, site, lambda i, r: {**r, column: value} if i == 0 else r)


def single_class(tmp_path: Path, site: str) -> Path:
    """The site's example CSV with every row labelled 0 (no disease)."""
    return edited_csv(tmp_path, site, lambda i, r: {**r, "num": "0"})
