"""Edited copies of the embedded data file, for tests of what a site refuses."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from site_node.data.heart_disease import HOSPITALS, embedded_csv

Row = dict[str, str]


def edited_csv(tmp_path: Path, site: str, edit: Callable[[int, Row], Row | None],
               name: str = "data.csv") -> Path:
    """The embedded CSV with ``edit(i, row)`` applied to the ``i``-th row of ``site``
    (returning None drops the row)."""
    out = tmp_path / name
    with embedded_csv().open(newline="") as src, out.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or ()))
        writer.writeheader()
        i = 0
        for row in reader:
            if row["dataset"] == HOSPITALS[site]:
                edited = edit(i, dict(row))
                i += 1
                if edited is None:
                    continue
                row = edited
            writer.writerow(row)
    return out


def with_value(tmp_path: Path, site: str, column: str, value: str) -> Path:
    """The embedded CSV with ``column`` of the site's first row set to ``value``."""
    return edited_csv(tmp_path, site, lambda i, r: {**r, column: value} if i == 0 else r)


def single_class(tmp_path: Path, site: str) -> Path:
    """The embedded CSV where every row of ``site`` has label 0."""
    return edited_csv(tmp_path, site, lambda i, r: {**r, "num": "0"})
