"""A SQLite file private to its user, written through nested transactions.

The site's privacy ledger (:mod:`site_node.privacy.ledger`) and the consortium's run store
(:mod:`consortium.store.database`) keep their records the same way: the file is created 0600
in a 0700 directory (:func:`site_node.protocol.keys.private_dir`) and written in WAL mode on
an autocommit connection with explicit ``BEGIN IMMEDIATE`` transactions; a read-only open
creates nothing. Callers name the file in their own errors.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from site_node.protocol.keys import private_dir


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open ``path`` (read-only, or created private and in WAL mode); rows as ``sqlite3.Row``.

    Raises
    ------
    sqlite3.Error, OSError
        If the file or its directory cannot be opened or created.
    """
    if readonly:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0,
                               isolation_level=None)
    else:
        private_dir(path.parent)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    return conn


class Transactions:
    """``with transactions():`` runs one transaction on ``conn``; nested uses join the
    outermost, so everything commits or nothing does. A SQLite error rolls back and is raised
    as ``translate(error)``."""

    def __init__(self, conn: sqlite3.Connection,
                 translate: Callable[[sqlite3.Error], Exception]) -> None:
        self._conn = conn
        self._translate = translate
        self._depth = 0

    @contextmanager
    def __call__(self) -> Iterator[sqlite3.Connection]:
        outer = self._depth == 0
        try:
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")
        except BaseException as exc:
            if outer and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise
