"""The run store: runs, rounds, every site's figures and the global model per round.

The consortium server is the only writer. A round, its site figures and its checkpoint are
written together (and, by the workflow, in the same transaction as the round's receipts and
audit entries: see :meth:`Database.transaction`), so a reader sees either the whole round or
none of it. The database runs in WAL mode, so the dashboard can read while a run writes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from consortium.errors import RunTaken, StoreError
from consortium.store.database import Database
from consortium.store.records import (
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    RunStatus,
    SiteRoundRecord,
)
from consortium.store.schema import ROUNDS, RUNS, SITE_ROUNDS, Table

log = logging.getLogger(__name__)

#: The columns of each table, derived from its record (:mod:`consortium.store.schema`).
_SITE_COLUMNS = SITE_ROUNDS.columns
_ROUND_COLUMNS = ROUNDS.columns
_RUN_COLUMNS = RUNS.columns


class RunStore:
    """Access to one consortium's run store.

    Parameters
    ----------
    source : Path or Database
        The SQLite file, or an open :class:`Database` to share (with the audit log).
    readonly : bool
        Open for reading only (the dashboard, the export). A read-only store must exist.
    """

    def __init__(self, source: Path | str | Database, *, readonly: bool = False) -> None:
        self.db = source if isinstance(source, Database) else Database(source, readonly=readonly)
        self.path = self.db.path
        self._columns = {t.name: self._existing(t.name) for t in (RUNS, SITE_ROUNDS)}

    def _existing(self, table: str) -> set[str]:
        return {str(r["name"]) for r in self.db.query(f"PRAGMA table_info({table})")}

    def _select(self, table: Table) -> str:
        return table.select_list(self._columns.get(table.name))

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (consortium server only) ---------------------------------------------------

    def start_run(self, run: RunRecord) -> None:
        """Record a new run as live."""
        with self.db.transaction() as conn:
            conn.execute(RUNS.insert_sql(), RUNS.values(run))

    def record_round(self, run_id: str, rnd: RoundRecord, *, checkpoint: bytes | None = None,
                     checkpoint_sha256: str | None = None) -> None:
        """Write one round, its site figures and (optionally) its checkpoint atomically."""
        with self.db.transaction() as conn:
            conn.execute(ROUNDS.insert_sql(), (run_id, *ROUNDS.values(rnd)))
            conn.executemany(SITE_ROUNDS.insert_sql(),
                             [(run_id, rnd.round, *SITE_ROUNDS.values(s)) for s in rnd.sites])
            if checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints(run_id, round, sha256, model) VALUES (?,?,?,?)",
                    (run_id, rnd.round, checkpoint_sha256 or "", checkpoint),
                )

    def finish_run(self, run_id: str, *, status: RunStatus, reason: str,
                   finished_at: str) -> None:
        """Mark a run as ended, with why."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE runs SET status=?, stop_reason=?, finished_at=? WHERE run_id=?",
                         (status, reason, finished_at, run_id))

    def claim_run(self, run_id: str, *, seen_status: str, seen_owner: str | None,
                  owner: str, status: str = RUN_RUNNING, reason: str | None = None,
                  finished_at: str | None = None) -> None:
        """Take over a run whose status and owner are still ``seen_status`` and ``seen_owner``
        (compare-and-set): it becomes ``status`` (live again by default) under ``owner``.

        The check and the update run in one ``BEGIN IMMEDIATE`` transaction (the caller's, if
        one is open, so that its audit entry commits with the claim): of two processes that
        read the same run, exactly one claims it.

        Raises
        ------
        RunTaken
            If the run's status or owner changed since they were read (another process claimed
            it); nothing was written.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT status, owner FROM runs WHERE run_id=?",
                               (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in {self.path}")
            if (row["status"], row["owner"]) != (seen_status, seen_owner):
                raise RunTaken(f"run {run_id} was just taken by process {row['owner']} (it is "
                               f"{row['status']} now); nothing was started")
            conn.execute("UPDATE runs SET status=?, stop_reason=?, finished_at=?, owner=? "
                         "WHERE run_id=?", (status, reason, finished_at, owner, run_id))

    # -- reading -----------------------------------------------------------------------------

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = self.db.query(f"SELECT {self._select(RUNS)} FROM runs "
                             "ORDER BY started_at DESC")
        return [_run_from_row(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """One run by id; raises :class:`StoreError` if there is none."""
        rows = self.db.query(f"SELECT {self._select(RUNS)} FROM runs "
                             "WHERE run_id=?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return _run_from_row(rows[0])

    def latest_run_id(self) -> str:
        """The id of the most recently started run."""
        rows = self.db.query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
        if not rows:
            raise StoreError(f"the run store {self.path} holds no run yet")
        return str(rows[0]["run_id"])

    def rounds(self, run_id: str) -> list[RoundRecord]:
        """Every recorded round of a run, in order, with its site figures."""
        site_rows = self.db.query(
            f"SELECT round, {self._select(SITE_ROUNDS)} FROM site_rounds "
            "WHERE run_id=? ORDER BY round, site", (run_id,))
        by_round: dict[int, list[SiteRoundRecord]] = {}
        for row in site_rows:
            by_round.setdefault(int(row["round"]), []).append(_site_from_row(run_id, row))
        rows = self.db.query(f"SELECT {self._select(ROUNDS)} FROM rounds WHERE run_id=? "
                             "ORDER BY round", (run_id,))
        return [_round_from_row(run_id, r, tuple(by_round.get(int(r["round"]), [])))
                for r in rows]

    def checkpoint(self, run_id: str, rnd: int) -> tuple[bytes, str]:
        """The global model after round ``rnd`` (NumPy ``.npz`` bytes) and its SHA-256."""
        rows = self.db.query("SELECT model, sha256 FROM checkpoints WHERE run_id=? AND round=?",
                             (run_id, rnd))
        if not rows:
            raise StoreError(f"no checkpoint for run {run_id!r} round {rnd}")
        return _blob(rows[0]["model"], run_id, rnd), str(rows[0]["sha256"])

    def checkpoints(self, run_id: str) -> Iterator[tuple[int, bytes, str]]:
        """Every checkpoint of a run, by round: (round, ``.npz`` bytes, SHA-256), read one at a
        time."""
        rounds = self.db.query("SELECT round FROM checkpoints WHERE run_id=? ORDER BY round",
                               (run_id,))
        for row in rounds:
            model, sha = self.checkpoint(run_id, int(row["round"]))
            yield int(row["round"]), model, sha

    def last_checkpoint(self, run_id: str) -> tuple[int, bytes, str] | None:
        """The latest checkpoint of a run: (round, ``.npz`` bytes, SHA-256), if any."""
        rows = self.db.query("SELECT round, model, sha256 FROM checkpoints WHERE run_id=? "
                             "ORDER BY round DESC LIMIT 1", (run_id,))
        if not rows:
            return None
        rnd = int(rows[0]["round"])
        return rnd, _blob(rows[0]["model"], run_id, rnd), str(rows[0]["sha256"])

    def table_names(self) -> list[str]:
        """Names of the tables the store holds."""
        return self.db.table_names()


def _blob(model: object, run_id: str, rnd: int) -> bytes:
    if not isinstance(model, bytes):
        raise StoreError(f"checkpoint of run {run_id!r} round {rnd}: the model is not a blob "
                         f"({type(model).__name__})")
    return model


def _site_from_row(run_id: str, row: sqlite3.Row) -> SiteRoundRecord:
    where = f"run {run_id} round {row['round']} site {row['site']}"
    return SiteRoundRecord(**SITE_ROUNDS.field_values(row, where))


def _round_from_row(run_id: str, row: sqlite3.Row,
                    sites: tuple[SiteRoundRecord, ...]) -> RoundRecord:
    values = ROUNDS.field_values(row, f"run {run_id} round {row['round']}")
    return RoundRecord(**values, sites=sites)


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**RUNS.field_values(row, f"run {row['run_id']}"))
