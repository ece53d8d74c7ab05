"""The run store: one SQLite database per consortium.

The consortium server is the only writer. It writes one transaction per round (the round, every
site's figures and the global model checkpoint together), so a reader sees either the whole
round or none of it. The database runs in WAL mode, so the dashboard can read while a run writes.

This module imports the standard library only: the dashboard and the export use it without
pulling in torch or Flower.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consortium.records import (
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    stop_reason TEXT,
    engine TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    policy_json TEXT NOT NULL,
    delta REAL NOT NULL,
    epsilon_ceiling REAL NOT NULL,
    rounds_planned INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    sites_json TEXT NOT NULL,
    secagg_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    accuracy_mean REAL,
    accuracy_weighted REAL,
    loss_mean REAL,
    loss_weighted REAL,
    failure_reason TEXT,
    policy_sha256 TEXT,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS site_rounds (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    site TEXT NOT NULL,
    accuracy REAL,
    loss REAL,
    num_examples INTEGER,
    num_train_examples INTEGER,
    epsilon REAL,
    noise_multiplier REAL,
    sample_rate REAL,
    steps INTEGER,
    max_grad_norm REAL,
    accountant TEXT,
    trained INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, round, site),
    FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    model BLOB NOT NULL,
    PRIMARY KEY (run_id, round)
);
"""

_SITE_COLUMNS = (
    "site, accuracy, loss, num_examples, num_train_examples, epsilon, noise_multiplier, "
    "sample_rate, steps, max_grad_norm, accountant, trained"
)
_ROUND_COLUMNS = (
    "round, status, started_at, finished_at, duration_s, accuracy_mean, accuracy_weighted, "
    "loss_mean, loss_weighted, failure_reason, policy_sha256"
)
_RUN_COLUMNS = (
    "run_id, started_at, status, engine, policy_sha256, policy_json, delta, epsilon_ceiling, "
    "rounds_planned, seed, sites_json, secagg_json, finished_at, stop_reason"
)


class StoreError(Exception):
    """The run store is missing, unreadable, locked or not a run store."""


class RunStore:
    """Access to one consortium's run store.

    Parameters
    ----------
    path : Path
        Location of the SQLite file. It is made absolute at once, because the Flower ServerApp
        runs with the SuperLink's working directory.
    readonly : bool
        Open for reading only (the dashboard, the export). A read-only store must exist.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise StoreError(f"run store not found: {self.path}")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        if not readonly:
            self._init_schema()
        else:
            self._check_schema()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=5.0)
            else:
                conn = sqlite3.connect(self.path, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _init_schema(self) -> None:
        with self._transaction() as conn:
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _check_schema(self) -> None:
        try:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a run store: {exc}") from exc
        if row is None or int(row["value"]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: unsupported run store schema version")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"run store {self.path} is open read-only")
        try:
            with self._conn:
                yield self._conn
        except sqlite3.Error as exc:
            raise StoreError(f"write to run store {self.path} failed: {exc}") from exc

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (consortium server only) ---------------------------------------------------

    def start_run(self, run: RunRecord) -> None:
        """Record a new run as live."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO runs({_RUN_COLUMNS}) VALUES ({','.join('?' * 14)})",
                (
                    run.run_id, run.started_at, run.status, run.engine, run.policy_sha256,
                    run.policy_json, run.delta, run.epsilon_ceiling, run.rounds_planned,
                    run.seed, json.dumps(list(run.sites)), run.secagg_json,
                    run.finished_at, run.stop_reason,
                ),
            )

    def record_round(
        self,
        run_id: str,
        rnd: RoundRecord,
        *,
        checkpoint: bytes | None = None,
        checkpoint_sha256: str | None = None,
    ) -> None:
        """Write one round, its site figures and (optionally) its checkpoint atomically."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO rounds(run_id, {_ROUND_COLUMNS}) VALUES ({','.join('?' * 12)})",
                (
                    run_id, rnd.round, rnd.status, rnd.started_at, rnd.finished_at,
                    rnd.duration_s, rnd.accuracy_mean, rnd.accuracy_weighted, rnd.loss_mean,
                    rnd.loss_weighted, rnd.failure_reason, rnd.policy_sha256,
                ),
            )
            conn.executemany(
                f"INSERT INTO site_rounds(run_id, round, {_SITE_COLUMNS}) "
                f"VALUES ({','.join('?' * 14)})",
                [_site_row(run_id, rnd.round, s) for s in rnd.sites],
            )
            if checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints(run_id, round, sha256, model) VALUES (?,?,?,?)",
                    (run_id, rnd.round, checkpoint_sha256 or "", checkpoint),
                )

    def finish_run(self, run_id: str, *, status: str, reason: str, finished_at: str) -> None:
        """Mark a run as ended, with why."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET status=?, stop_reason=?, finished_at=? WHERE run_id=?",
                (status, reason, finished_at, run_id),
            )

    # -- reading -----------------------------------------------------------------------------

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC")
        return [_run_from_row(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """One run by id; raises :class:`StoreError` if there is none."""
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return _run_from_row(rows[0])

    def latest_run_id(self) -> str:
        """The id of the most recently started run."""
        rows = self._query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
        if not rows:
            raise StoreError(f"the run store {self.path} holds no run yet")
        return str(rows[0]["run_id"])

    def rounds(self, run_id: str) -> list[RoundRecord]:
        """Every recorded round of a run, in order, with its site figures."""
        site_rows = self._query(
            f"SELECT round, {_SITE_COLUMNS} FROM site_rounds WHERE run_id=? ORDER BY round, site",
            (run_id,),
        )
        by_round: dict[int, list[SiteRoundRecord]] = {}
        for row in site_rows:
            by_round.setdefault(int(row["round"]), []).append(_site_from_row(row))
        rows = self._query(
            f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE run_id=? ORDER BY round", (run_id,)
        )
        return [_round_from_row(r, tuple(by_round.get(int(r["round"]), []))) for r in rows]

    def checkpoint(self, run_id: str, rnd: int) -> tuple[bytes, str]:
        """The global model after round ``rnd`` (NumPy ``.npz`` bytes) and its SHA-256."""
        rows = self._query(
            "SELECT model, sha256 FROM checkpoints WHERE run_id=? AND round=?", (run_id, rnd)
        )
        if not rows:
            raise StoreError(f"no checkpoint for run {run_id!r} round {rnd}")
        return bytes(rows[0]["model"]), str(rows[0]["sha256"])

    def table_names(self) -> list[str]:
        """Names of the tables the store holds, so a reader can detect optional tables."""
        rows = self._query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        return [str(r["name"]) for r in rows]

    def table_rows(self, table: str, *, limit: int = 10_000) -> list[dict[str, object]]:
        """Up to ``limit`` rows of one table of the store, as column-to-value dicts.

        ``table`` must be one of :meth:`table_names`; raises :class:`StoreError` otherwise.
        """
        if table not in self.table_names():
            raise StoreError(f"no table {table!r} in {self.path}")
        quoted = table.replace('"', '""')
        rows = self._query(f'SELECT * FROM "{quoted}" LIMIT ?', (limit,))
        return [dict(r) for r in rows]

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run store {self.path}: {exc}") from exc


def _site_row(run_id: str, rnd: int, s: SiteRoundRecord) -> tuple[object, ...]:
    return (
        run_id, rnd, s.site, s.accuracy, s.loss, s.num_examples, s.num_train_examples,
        s.epsilon, s.noise_multiplier, s.sample_rate, s.steps, s.max_grad_norm,
        s.accountant, int(s.trained),
    )


def _site_from_row(row: sqlite3.Row) -> SiteRoundRecord:
    return SiteRoundRecord(
        site=row["site"], accuracy=row["accuracy"], loss=row["loss"],
        num_examples=row["num_examples"], num_train_examples=row["num_train_examples"],
        epsilon=row["epsilon"], noise_multiplier=row["noise_multiplier"],
        sample_rate=row["sample_rate"], steps=row["steps"],
        max_grad_norm=row["max_grad_norm"], accountant=row["accountant"],
        trained=bool(row["trained"]),
    )


def _round_from_row(row: sqlite3.Row, sites: tuple[SiteRoundRecord, ...]) -> RoundRecord:
    return RoundRecord(
        round=row["round"], status=row["status"], started_at=row["started_at"],
        finished_at=row["finished_at"], duration_s=row["duration_s"],
        accuracy_mean=row["accuracy_mean"], accuracy_weighted=row["accuracy_weighted"],
        loss_mean=row["loss_mean"], loss_weighted=row["loss_weighted"],
        failure_reason=row["failure_reason"], policy_sha256=row["policy_sha256"], sites=sites,
    )


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], started_at=row["started_at"], status=row["status"],
        engine=row["engine"], policy_sha256=row["policy_sha256"],
        policy_json=row["policy_json"], delta=row["delta"],
        epsilon_ceiling=row["epsilon_ceiling"], rounds_planned=row["rounds_planned"],
        seed=row["seed"], sites=tuple(json.loads(row["sites_json"])),
        secagg_json=row["secagg_json"], finished_at=row["finished_at"],
        stop_reason=row["stop_reason"],
    )


__all__ = ["RUN_RUNNING", "SCHEMA_VERSION", "RunStore", "StoreError"]
