"""The run store: runs, rounds, every site's figures and the global model per round.

The consortium server is the only writer. A round, its site figures and its checkpoint are
written together (and, by the workflow, in the same transaction as the round's receipts and
audit entries: see :meth:`Database.transaction`), so a reader sees either the whole round or
none of it. The database runs in WAL mode, so the dashboard can read while a run writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from consortium.errors import StoreError
from consortium.store.database import Database
from consortium.store.records import RoundRecord, RunRecord, SiteRoundRecord

log = logging.getLogger(__name__)

_SITE_COLUMNS = (
    "site", "accuracy", "loss", "num_examples", "num_train_examples", "epsilon", "delta",
    "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant", "trained",
    "refusal",
)
_ROUND_COLUMNS = (
    "round", "status", "started_at", "finished_at", "duration_s", "accuracy_mean",
    "accuracy_weighted", "loss_mean", "loss_weighted", "failure_reason", "policy_sha256",
)
_RUN_COLUMNS = (
    "run_id", "started_at", "status", "engine", "policy_sha256", "policy_json", "delta",
    "epsilon_ceiling", "rounds_planned", "seed", "sites_json", "secagg_json", "mode",
    "finished_at", "stop_reason", "owner", "example_site_policies", "task_sha256", "task_json",
)


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
        self._columns = {t: self._existing(t) for t in ("runs", "site_rounds")}

    def _existing(self, table: str) -> set[str]:
        return {str(r["name"]) for r in self.db.query(f"PRAGMA table_info({table})")}

    def _select(self, table: str, columns: tuple[str, ...]) -> str:
        have = self._columns.get(table)
        return ", ".join(c if have is None or c in have else f"NULL AS {c}" for c in columns)

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
            conn.execute(
                f"INSERT INTO runs({', '.join(_RUN_COLUMNS)}) VALUES "
                f"({','.join('?' * len(_RUN_COLUMNS))})",
                (run.run_id, run.started_at, run.status, run.engine, run.policy_sha256,
                 run.policy_json, run.delta, run.epsilon_ceiling, run.rounds_planned, run.seed,
                 json.dumps(list(run.sites)), run.secagg_json, run.mode, run.finished_at,
                 run.stop_reason, run.owner, int(run.example_site_policies), run.task_sha256,
                 run.task_json),
            )

    def record_round(self, run_id: str, rnd: RoundRecord, *, checkpoint: bytes | None = None,
                     checkpoint_sha256: str | None = None) -> None:
        """Write one round, its site figures and (optionally) its checkpoint atomically."""
        with self.db.transaction() as conn:
            conn.execute(
                f"INSERT INTO rounds(run_id, {', '.join(_ROUND_COLUMNS)}) "
                f"VALUES ({','.join('?' * (len(_ROUND_COLUMNS) + 1))})",
                (run_id, rnd.round, rnd.status, rnd.started_at, rnd.finished_at, rnd.duration_s,
                 rnd.accuracy_mean, rnd.accuracy_weighted, rnd.loss_mean, rnd.loss_weighted,
                 rnd.failure_reason, rnd.policy_sha256),
            )
            conn.executemany(
                f"INSERT INTO site_rounds(run_id, round, {', '.join(_SITE_COLUMNS)}) "
                f"VALUES ({','.join('?' * (len(_SITE_COLUMNS) + 2))})",
                [(run_id, rnd.round, *_site_values(s)) for s in rnd.sites],
            )
            if checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints(run_id, round, sha256, model) VALUES (?,?,?,?)",
                    (run_id, rnd.round, checkpoint_sha256 or "", checkpoint),
                )

    def finish_run(self, run_id: str, *, status: str, reason: str, finished_at: str) -> None:
        """Mark a run as ended, with why."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE runs SET status=?, stop_reason=?, finished_at=? WHERE run_id=?",
                         (status, reason, finished_at, run_id))

    def reopen_run(self, run_id: str, *, owner: str) -> None:
        """Mark a run live again (it is being resumed by ``owner``)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE runs SET status='running', stop_reason=NULL, finished_at=NULL, "
                         "owner=? WHERE run_id=?", (owner, run_id))

    # -- reading -----------------------------------------------------------------------------

    def list_runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = self.db.query(f"SELECT {self._select('runs', _RUN_COLUMNS)} FROM runs "
                             "ORDER BY started_at DESC")
        return [_run_from_row(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """One run by id; raises :class:`StoreError` if there is none."""
        rows = self.db.query(f"SELECT {self._select('runs', _RUN_COLUMNS)} FROM runs "
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
            f"SELECT round, {self._select('site_rounds', _SITE_COLUMNS)} FROM site_rounds "
            "WHERE run_id=? ORDER BY round, site", (run_id,))
        by_round: dict[int, list[SiteRoundRecord]] = {}
        for row in site_rows:
            by_round.setdefault(int(row["round"]), []).append(_site_from_row(row))
        rows = self.db.query(f"SELECT {', '.join(_ROUND_COLUMNS)} FROM rounds WHERE run_id=? "
                             "ORDER BY round", (run_id,))
        return [_round_from_row(r, tuple(by_round.get(int(r["round"]), []))) for r in rows]

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


def _site_values(s: SiteRoundRecord) -> tuple[object, ...]:
    return (s.site, s.accuracy, s.loss, s.num_examples, s.num_train_examples, s.epsilon,
            s.delta, s.noise_multiplier, s.sample_rate, s.steps, s.max_grad_norm, s.accountant,
            int(s.trained), s.refusal)


def _site_from_row(row: sqlite3.Row) -> SiteRoundRecord:
    values = {c: row[c] for c in _SITE_COLUMNS}
    values["trained"] = bool(values["trained"])
    return SiteRoundRecord(**values)


def _round_from_row(row: sqlite3.Row, sites: tuple[SiteRoundRecord, ...]) -> RoundRecord:
    return RoundRecord(**{c: row[c] for c in _ROUND_COLUMNS}, sites=sites)


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    values = {c: row[c] for c in _RUN_COLUMNS if c != "sites_json"}
    values["mode"] = values["mode"] or "deployment"
    values["example_site_policies"] = bool(values["example_site_policies"])
    try:
        sites = json.loads(row["sites_json"])
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise ValueError("not a list of site ids")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {row['run_id']}: its stored site list is unreadable: "
                         f"{exc}") from None
    return RunRecord(**values, sites=tuple(sites))
