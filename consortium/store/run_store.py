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
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from consortium.errors import RunTaken, StoreError
from consortium.store.database import Database
from consortium.store.records import (
    MODE_DEPLOYMENT,
    RUN_RUNNING,
    RUN_STATUSES,
    RoundRecord,
    RoundStatus,
    RunMode,
    RunRecord,
    RunStatus,
    SiteRoundRecord,
)

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=StrEnum)

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
    "data_fingerprints_json",
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
                 run.task_json, _json_or_none(run.data_fingerprints)),
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


def _site_values(s: SiteRoundRecord) -> tuple[object, ...]:
    return (s.site, s.accuracy, s.loss, s.num_examples, s.num_train_examples, s.epsilon,
            s.delta, s.noise_multiplier, s.sample_rate, s.steps, s.max_grad_norm, s.accountant,
            int(s.trained), s.refusal)


def _site_from_row(row: sqlite3.Row) -> SiteRoundRecord:
    values = {c: row[c] for c in _SITE_COLUMNS}
    values["trained"] = bool(values["trained"])
    return SiteRoundRecord(**values)


def _stored(kind: type[_E], value: object, allowed: tuple[_E, ...], where: str) -> _E:
    """A status or mode read from a row, as its enum; anything else is a :class:`StoreError`."""
    if not isinstance(value, str) or value not in allowed:
        raise StoreError(f"{where}: unknown {kind.__name__} {value!r} in the run store "
                         f"(expected one of {', '.join(allowed)})")
    return kind(value)


def _round_from_row(run_id: str, row: sqlite3.Row,
                    sites: tuple[SiteRoundRecord, ...]) -> RoundRecord:
    values = {c: row[c] for c in _ROUND_COLUMNS}
    values["status"] = _stored(RoundStatus, values["status"], tuple(RoundStatus),
                               f"run {run_id} round {values['round']}")
    return RoundRecord(**values, sites=sites)


def _json_or_none(value: dict[str, str] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _fingerprints(row: sqlite3.Row) -> dict[str, str] | None:
    text = row["data_fingerprints_json"]
    if text is None:
        return None
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("not a map of site ids to fingerprints")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {row['run_id']}: its stored data fingerprints are unreadable: "
                         f"{exc}") from None
    return value


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    values = {c: row[c] for c in _RUN_COLUMNS if c not in ("sites_json",
                                                           "data_fingerprints_json")}
    values["data_fingerprints"] = _fingerprints(row)
    where = f"run {row['run_id']}"
    values["status"] = _stored(RunStatus, values["status"], RUN_STATUSES, where)
    values["mode"] = _stored(RunMode, values["mode"] or MODE_DEPLOYMENT, tuple(RunMode), where)
    values["example_site_policies"] = bool(values["example_site_policies"])
    try:
        sites = json.loads(row["sites_json"])
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise ValueError("not a list of site ids")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {row['run_id']}: its stored site list is unreadable: "
                         f"{exc}") from None
    return RunRecord(**values, sites=tuple(sites))
