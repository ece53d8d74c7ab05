"""The private SQLite file the ledger and the run store share: created private, nested
transactions commit together or not at all, SQLite errors come out as the caller's."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from site_node import database


class Named(Exception):
    pass


def _open(tmp_path: Path) -> tuple[sqlite3.Connection, database.Transactions]:
    conn = database.connect(tmp_path / "d" / "x.sqlite", readonly=False)
    conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
    return conn, database.Transactions(conn, lambda exc: Named(f"x.sqlite: {exc}"))


def test_the_file_and_its_directory_are_private(tmp_path: Path) -> None:
    database.connect(tmp_path / "d" / "x.sqlite", readonly=False).close()
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "d" / "x.sqlite").stat().st_mode) == 0o600


def test_nested_transactions_commit_together(tmp_path: Path) -> None:
    conn, tx = _open(tmp_path)
    with tx() as outer:
        outer.execute("INSERT INTO t VALUES (1)")
        with tx() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
        assert conn.in_transaction  # the inner one did not commit
    assert [r["v"] for r in conn.execute("SELECT v FROM t ORDER BY v")] == [1, 2]


def test_an_error_anywhere_rolls_back_everything_and_is_translated(tmp_path: Path) -> None:
    conn, tx = _open(tmp_path)
    with pytest.raises(Named, match=r"x\.sqlite: UNIQUE constraint failed"), tx() as outer:
        outer.execute("INSERT INTO t VALUES (1)")
        with tx() as inner:
            inner.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(KeyError), tx() as c:  # other errors pass through, still rolled back
        c.execute("INSERT INTO t VALUES (3)")
        raise KeyError("boom")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert not conn.in_transaction


def test_a_read_only_open_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        database.connect(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()
