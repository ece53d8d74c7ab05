"""A site's privacy budget ledger: every DP event it has ever run, on its own disk.

The ledger is a SQLite file (``ledger.sqlite`` in the site's state directory, WAL mode, private
to the user). Each round of DP-SGD the site trained is one row of ``dp_events``, written right
after training and before the update is returned, so a round whose upload is lost is still
counted; the receipt the site then signed for it is kept in ``receipts``, so that it can be sent
again if the round's reply was lost (a run resumed after a crash). A run
the site refused is one row of ``refusals``: the site refuses the rest of that run too (see
:mod:`site_node.privacy.admission`). Rows are never updated or deleted. ε is always composed
over the events by :mod:`site_node.privacy.accountant`.

Two companion tables: ``data_fingerprints`` (append-only: the SHA-256 of the data each run
trained on, :mod:`site_node.privacy.data_record`) and ``reservations`` (not a record of anything
spent, so rows change and go: the ε a run that is under way has been admitted for,
:mod:`site_node.privacy.reservations`).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from site_node import database
from site_node.errors import LedgerError
from site_node.protocol.mechanism import Mechanism

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dp_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    policy_sha256 TEXT NOT NULL,
    noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL,
    max_grad_norm REAL NOT NULL,
    accountant TEXT NOT NULL,
    delta REAL NOT NULL,
    recorded_at TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT 'record',
    UNIQUE (run_id, round)
);
CREATE TABLE IF NOT EXISTS receipts (
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    receipt_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS refusals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    reason TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data_fingerprints (
    run_id TEXT PRIMARY KEY,
    data_sha256 TEXT NOT NULL,
    round INTEGER NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    run_id TEXT PRIMARY KEY,
    next_round INTEGER NOT NULL,
    last_round INTEGER NOT NULL,
    noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL,
    max_grad_norm REAL NOT NULL,
    accountant TEXT NOT NULL,
    reserved_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT 'record'
);
CREATE TRIGGER IF NOT EXISTS data_fingerprints_no_update BEFORE UPDATE ON data_fingerprints
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS data_fingerprints_no_delete BEFORE DELETE ON data_fingerprints
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS dp_events_no_update BEFORE UPDATE ON dp_events
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS dp_events_no_delete BEFORE DELETE ON dp_events
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS refusals_no_update BEFORE UPDATE ON refusals
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS refusals_no_delete BEFORE DELETE ON refusals
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
"""

_COLUMNS = (
    "run_id, round, policy_sha256, noise_multiplier, sample_rate, steps, max_grad_norm, "
    "accountant, delta, recorded_at, unit"
)
#: Columns added after the first ledgers were written (a ledger without one is migrated when
#: opened for writing; read-only, its rows read as the default: record-level).
_ADDED_COLUMNS = (("dp_events", "unit", "TEXT NOT NULL DEFAULT 'record'"),
                  ("reservations", "unit", "TEXT NOT NULL DEFAULT 'record'"))


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``table`` exists and has ``column``."""
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def unit_column(conn: sqlite3.Connection, table: str) -> str:
    """The select expression of ``table``'s privacy unit (``'record'`` in an old ledger)."""
    return "unit" if has_column(conn, table, "unit") else "'record' AS unit"


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        if not has_column(conn, table, column):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True)
class LedgerEvent:
    """One round of DP-SGD a site ran."""

    run_id: str
    round: int
    policy_sha256: str
    mechanism: Mechanism
    delta: float
    recorded_at: str


@dataclass(frozen=True)
class LedgerRefusal:
    """A run the site refused (at the given round), and why."""

    run_id: str
    round: int
    reason: str
    recorded_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SiteLedger:
    """The persistent, append-only record of a site's DP events and refusals.

    Parameters
    ----------
    path : Path
        The SQLite file; its directory is created (0700) if needed.
    readonly : bool
        Open an existing ledger for reading only (status and budget commands).
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        if readonly and not self.path.is_file():
            raise LedgerError(f"no privacy ledger at {self.path}")
        try:
            self._conn = database.connect(self.path, readonly=readonly)
            if not readonly:
                self._conn.executescript(_SCHEMA)
                _migrate(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot open privacy ledger {self.path}: {exc}") from exc
        self.transaction = database.Transactions(self._conn, self._write_error)

    def _write_error(self, exc: sqlite3.Error) -> LedgerError:
        if isinstance(exc, sqlite3.IntegrityError):
            return LedgerError(f"privacy ledger {self.path}: {exc}")
        return LedgerError(f"write to privacy ledger {self.path} failed: {exc}")

    @classmethod
    def in_state_dir(cls, state_dir: Path | str, *, readonly: bool = False) -> SiteLedger:
        """The ledger of the site whose state directory is ``state_dir``."""
        return cls(Path(state_dir) / LEDGER_FILE, readonly=readonly)

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for the ledger's companion tables
        (:mod:`site_node.privacy.reservations`, :mod:`site_node.privacy.data_record`); write
        through :attr:`transaction`."""
        return self._conn

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> SiteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, *, run_id: str, rnd: int, policy_sha256: str, mechanism: Mechanism,
               delta: float) -> LedgerEvent:
        """Append one trained round in its own transaction.

        Raises
        ------
        LedgerError
            If the round of that run is already recorded, or the write fails.
        """
        event = LedgerEvent(run_id=run_id, round=int(rnd), policy_sha256=policy_sha256,
                            mechanism=mechanism, delta=float(delta), recorded_at=_now())
        m = mechanism
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO dp_events({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, event.round, policy_sha256, m.noise_multiplier, m.sample_rate, m.steps,
                 m.max_grad_norm, m.accountant, event.delta, event.recorded_at, m.unit),
            )
        log.info("ledger %s: recorded run %s round %d", self.path, run_id, event.round)
        return event

    def store_receipt(self, *, run_id: str, rnd: int, data: bytes, signature: bytes) -> None:
        """Keep the signed receipt of a recorded round."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO receipts(run_id, round, receipt_json, signature) "
                         "VALUES (?,?,?,?)", (run_id, int(rnd), data.decode("ascii"),
                                              signature.hex()))

    def receipt(self, run_id: str, rnd: int) -> tuple[str, str] | None:
        """The signed receipt (canonical JSON, hex signature) of a recorded round, if kept."""
        row = self._conn.execute("SELECT receipt_json, signature FROM receipts WHERE run_id=? "
                                 "AND round=?", (run_id, int(rnd))).fetchone()
        return None if row is None else (str(row["receipt_json"]), str(row["signature"]))

    def spent(self, run_id: str, rnd: int) -> bool:
        """Whether the site already trained (and spent budget in) this round of this run."""
        row = self._conn.execute("SELECT 1 FROM dp_events WHERE run_id=? AND round=?",
                                 (run_id, int(rnd))).fetchone()
        return row is not None

    def record_refusal(self, *, run_id: str, rnd: int, reason: str) -> None:
        """Append a refusal of a run (nothing was spent)."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO refusals(run_id, round, reason, recorded_at) "
                         "VALUES (?,?,?,?)", (run_id, int(rnd), reason, _now()))

    def events(self, run_id: str | None = None) -> list[LedgerEvent]:
        """Every event (of one run, if given), oldest first."""
        columns = _COLUMNS.replace("unit", unit_column(self._conn, "dp_events"))
        sql = f"SELECT {columns} FROM dp_events"
        params: tuple[str, ...] = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)
        rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [_event(r) for r in rows]

    def refusals(self, run_id: str | None = None) -> list[LedgerRefusal]:
        """Every refusal (of one run, if given), oldest first."""
        sql, params = "SELECT run_id, round, reason, recorded_at FROM refusals", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)  # type: ignore[assignment]
        rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [LedgerRefusal(r["run_id"], r["round"], r["reason"], r["recorded_at"])
                for r in rows]

    def run_ids(self) -> list[str]:
        """The runs the site spent budget in, in the order they first did."""
        rows = self._conn.execute(
            "SELECT run_id, MIN(seq) AS first FROM dp_events GROUP BY run_id ORDER BY first"
        ).fetchall()
        return [str(r["run_id"]) for r in rows]


def _event(row: sqlite3.Row) -> LedgerEvent:
    mech = Mechanism(noise_multiplier=row["noise_multiplier"], sample_rate=row["sample_rate"],
                     steps=row["steps"], max_grad_norm=row["max_grad_norm"],
                     accountant=row["accountant"], unit=row["unit"])
    return LedgerEvent(run_id=row["run_id"], round=row["round"],
                       policy_sha256=row["policy_sha256"], mechanism=mech, delta=row["delta"],
                       recorded_at=row["recorded_at"])
