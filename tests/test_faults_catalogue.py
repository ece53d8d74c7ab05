"""The README's table of faults and bad input matches the suite: every class has tests, and the
counts are those of the collected tests (regenerate with ``python -m tests.faults_catalogue``)."""

from __future__ import annotations

from pathlib import Path

from tests.faults_catalogue import collected, counts, table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_class_is_tested_and_the_readme_table_is_current() -> None:
    ids = collected()
    assert all(n > 0 for n in counts(ids).values()), counts(ids)
    assert table(ids) in README.read_text(encoding="utf-8"), (
        "README's faults table is stale; regenerate it with `python -m tests.faults_catalogue`")
