"""The run tables' columns are the records' fields (issue 14, one source of truth).

SQLite's own account of each table (``PRAGMA table_info``), in a new store and in a store
migrated from every older schema version, must have exactly the columns the records declare
(:mod:`consortium.store.schema`), with a nullable column for each optional field and the SQL
type of the field's type; what the store writes stays byte for byte what it wrote before; and
an encoded column that does not decode to its field is refused naming the row.
"""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Callable
from dataclasses import field, fields, make_dataclass
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from consortium.errors import StoreError
from consortium.store.comparisons import comparisons, record_comparison
from consortium.store.database import Database
from consortium.store.records import (
    MODE_DEMO,
    ROUND_OK,
    RUN_RUNNING,
    ComparisonCell,
    ComparisonRecord,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)
from consortium.store.run_store import RunStore
from consortium.store.schema import RUNS, SITE_ROUNDS, TABLES, Table
from tests.consortium.store.test_database import v1_store, v2_store, v3_store

#: SQL type of each Python type a record field may have (JSON-encoded values are TEXT).
SQL_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "INTEGER"), (int, "INTEGER"), (float, "REAL"), (str, "TEXT"), (tuple, "TEXT"),
    (dict, "TEXT"),
)


def table_info(path: Path, table: str) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return {r["name"]: r for r in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def sql_type(hint: object) -> str:
    base = next(t for t in (get_args(hint) or (hint,)) if t is not types.NoneType)
    origin = getattr(base, "__origin__", base)
    return next(sql for py, sql in SQL_TYPES if isinstance(origin, type)
                and issubclass(origin, py))


def disagreements(table: Table, info: dict[str, sqlite3.Row]) -> list[str]:
    """How a table, as SQLite reports it, differs from its record."""
    declared = {*table.keys, *table.columns}
    out = [f"{table.name}.{c}: column without a field" for c in sorted(set(info) - declared)]
    out += [f"{table.name}.{c}: field without a column" for c in sorted(declared - set(info))]
    hints = get_type_hints(table.record)
    for name, column in zip(table.fields, table.columns, strict=True):
        if column not in info:
            continue
        optional = types.NoneType in get_args(hints[name])
        nullable = not info[column]["notnull"] and not info[column]["pk"]
        if optional != nullable:
            out.append(f"{table.name}.{column}: field {name} optional={optional}, "
                       f"column nullable={nullable}")
        if info[column]["type"] != sql_type(hints[name]):
            out.append(f"{table.name}.{column}: {info[column]['type']}, field {name} "
                       f"is {hints[name]}")
    return out


def _new(path: Path) -> Path:
    Database(path).close()
    return path


def _migrated(old: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        Database(old(path)).close()  # opened for writing: migrated to the current version
        return path
    return make


STORES = {"new": _new, "from-v1": _migrated(v1_store), "from-v2": _migrated(v2_store),
          "from-v3": _migrated(v3_store)}


@pytest.mark.parametrize("origin", sorted(STORES))
def test_each_run_table_has_exactly_the_columns_its_record_declares(
        tmp_path: Path, origin: str) -> None:
    path = STORES[origin](tmp_path / "runs.sqlite")
    found = [d for t in TABLES for d in disagreements(t, table_info(path, t.name))]
    assert found == []


def test_the_agreement_check_finds_a_stray_column_and_a_stray_field(tmp_path: Path) -> None:
    path = _new(tmp_path / "runs.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN stray TEXT")
    assert disagreements(RUNS, table_info(path, "runs")) == [
        "runs.stray: column without a field"]
    stray = make_dataclass("Stray", [("flavour", str | None, field(default=None))],
                           bases=(SiteRoundRecord,), frozen=True)
    spec = Table(name="site_rounds", record=stray, keys=SITE_ROUNDS.keys,
                 stored=SITE_ROUNDS.stored)
    assert disagreements(spec, table_info(path, "site_rounds")) == [
        "site_rounds.flavour: field without a column"]
    required = make_dataclass("Required", [("refusal", str, field(default=""))],
                              bases=(SiteRoundRecord,), frozen=True)
    spec = Table(name="site_rounds", record=required, keys=SITE_ROUNDS.keys,
                 stored=SITE_ROUNDS.stored)
    assert disagreements(spec, table_info(path, "site_rounds")) == [
        "site_rounds.refusal: field refusal optional=False, column nullable=True"]


RUN = RunRecord(run_id="r1", started_at="2026-01-01T00:00:00+00:00", status=RUN_RUNNING,
                engine="simulation", policy_sha256="p" * 64, policy_json='{"a": 1}',
                delta=1e-5, epsilon_ceiling=3.0, rounds_planned=2, seed=7, sites=("b", "a"),
                secagg_json='{"k": 2}', mode=MODE_DEMO, owner="host:1",
                example_site_policies=True, task_sha256="t" * 64, task_json="{}",
                data_fingerprints={"b": "fb", "a": "fa"}, choice_json='{"c": 1}')
ROUND = RoundRecord(round=1, status=ROUND_OK, started_at="s", finished_at="f", duration_s=1.5,
                    accuracy_mean=0.5, loss_mean=0.7, policy_sha256="p" * 64, sites=(
                        SiteRoundRecord(site="a", accuracy=0.5, loss=0.7, num_examples=10,
                                        num_train_examples=30, epsilon=1.25, delta=1e-6,
                                        noise_multiplier=1.1, sample_rate=0.25, steps=4,
                                        max_grad_norm=1.0, accountant="rdp", trained=True,
                                        majority_rate=0.6),
                        SiteRoundRecord(site="b", refusal="lifetime ceiling")))
COMPARISON = ComparisonRecord(
    comparison_id="c1", created_at="t", task_sha256="t" * 64, federated_run_id="r1",
    local_runs={"b": "r3", "a": "r2"},
    cells=(ComparisonCell(site="a", scope="own", model="local", class_index=0,
                          class_name="x", correct=3, total=4, site_train_count=0),))


def test_the_stored_values_are_unchanged_and_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.start_run(RUN)
        store.record_round("r1", ROUND)
        record_comparison(store.db, COMPARISON)
        assert store.get_run("r1") == RUN and store.rounds("r1") == [ROUND]
        assert comparisons(store.db, "r2") == [COMPARISON]
    conn = sqlite3.connect(path)
    rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("runs", "rounds", "site_rounds", "comparisons", "comparison_results")}
    assert rows["runs"] == [(
        "r1", "2026-01-01T00:00:00+00:00", None, "running", None, "simulation", "p" * 64,
        '{"a": 1}', 1e-5, 3.0, 2, 7, '["b", "a"]', '{"k": 2}', "local-demo", "host:1", 1,
        "t" * 64, "{}", '{"a": "fa", "b": "fb"}', '{"c": 1}')]
    assert rows["rounds"] == [("r1", 1, "ok", "s", "f", 1.5, 0.5, None, 0.7, None, None,
                               "p" * 64)]
    assert rows["site_rounds"] == [
        ("r1", 1, "a", 0.5, 0.7, 10, 30, 1.25, 1.1, 0.25, 4, 1.0, "rdp", 1, 1e-6, None, 0.6),
        ("r1", 1, "b", None, None, None, None, None, None, None, None, None, None, 0, None,
         "lifetime ceiling", None)]
    assert rows["comparisons"] == [("c1", "t", "t" * 64, "r1", '{"a": "r2", "b": "r3"}')]
    assert rows["comparison_results"] == [("c1", "a", "own", "local", 0, "x", 3, 4, 0)]
    conn.close()


def test_every_record_field_is_a_column_of_its_table_in_record_order() -> None:
    for table in TABLES:
        names = [f.name for f in fields(table.record) if f.name not in table.nested]
        assert list(table.fields) == names
        assert len(set(table.columns)) == len(table.columns) == len(names)


@pytest.mark.parametrize("local_runs", ["{", "[]", '{"a": 1}'])
def test_a_comparison_with_unreadable_local_runs_is_refused_naming_it(
        tmp_path: Path, local_runs: str) -> None:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.start_run(RUN)
        record_comparison(store.db, COMPARISON)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE comparisons SET local_runs_json=?", (local_runs,))
    with RunStore(path, readonly=True) as ro, pytest.raises(
            StoreError, match="comparison c1: its stored local runs are unreadable"):
        comparisons(ro.db)
