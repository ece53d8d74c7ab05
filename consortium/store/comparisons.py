"""Comparisons in the run store: which runs were compared, and the per-site, per-class table.

A comparison (``consortium compare``) is one federated run and one local-only run per site,
all recorded as runs with their rounds, receipts and audit entries; this module records what
ties them together and the table of how each model did per class on each test set. A store
written before comparisons existed (schema 2, opened read-only) simply holds none.
"""

from __future__ import annotations

from consortium.store.database import Database
from consortium.store.records import ComparisonCell, ComparisonRecord
from consortium.store.schema import COMPARISON_RESULTS, COMPARISONS


def record_comparison(db: Database, comparison: ComparisonRecord) -> None:
    """Write a comparison and its table in one transaction."""
    c = comparison
    with db.transaction() as conn:
        conn.execute(COMPARISONS.insert_sql(), COMPARISONS.values(c))
        conn.executemany(COMPARISON_RESULTS.insert_sql(),
                         [(c.comparison_id, *COMPARISON_RESULTS.values(x)) for x in c.cells])


def comparisons(db: Database, run_id: str | None = None) -> list[ComparisonRecord]:
    """Every comparison, newest first (with ``run_id``: those that include that run, as the
    federated run or as a site's local run)."""
    if "comparisons" not in db.table_names():
        return []
    rows = db.query(f"SELECT {COMPARISONS.select_list()} FROM comparisons "
                    "ORDER BY created_at DESC")
    out = []
    for row in rows:
        where = f"comparison {row['comparison_id']}"
        values = COMPARISONS.field_values(row, where)
        if run_id is not None and run_id != values["federated_run_id"] \
                and run_id not in values["local_runs"].values():
            continue
        cells = db.query(f"SELECT {COMPARISON_RESULTS.select_list()} FROM comparison_results "
                         "WHERE comparison_id=? ORDER BY site, scope, model, class_index",
                         (row["comparison_id"],))
        out.append(ComparisonRecord(**values, cells=tuple(
            ComparisonCell(**COMPARISON_RESULTS.field_values(c, where)) for c in cells)))
    return out
