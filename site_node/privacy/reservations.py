"""Reservations: the rounds a run under way has been admitted for and not yet recorded.

Admission (:mod:`site_node.privacy.admission`) runs in one ``BEGIN IMMEDIATE`` transaction of
the site's ledger, so two runs admitted at the same moment, in two processes of one site home,
are admitted one after the other. The first run's admission writes a reservation (its remaining
planned rounds and its mechanism); the second one's lifetime projection counts that reservation
as if it were spent, so the two together cannot pass the site's lifetime ceiling.

A reservation shrinks as each round is recorded (in the same transaction as the round's ledger
event) and is released by the run's last planned round, by a refusal of the run, or by the site
admin (``site-node budget --release RUN``) for a run known to be dead. A reservation left by a
killed run only makes the site more conservative: every round of every run is admitted again
under the lock against every event and every other reservation. The table is not a record of
anything spent: rows are updated and deleted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from site_node.privacy.ledger import SiteLedger, unit_column
from site_node.protocol.mechanism import Mechanism

_COLUMNS = ("run_id, next_round, last_round, noise_multiplier, sample_rate, steps, "
            "max_grad_norm, accountant, reserved_at, updated_at, unit")


@dataclass(frozen=True)
class Reservation:
    """Rounds ``next_round`` .. ``last_round`` of a run, admitted and not yet recorded."""

    run_id: str
    next_round: int
    last_round: int
    mechanism: Mechanism
    reserved_at: str
    updated_at: str

    @property
    def remaining(self) -> int:
        """How many rounds of ``mechanism`` the reservation holds."""
        return max(0, self.last_round - self.next_round + 1)

    def mechanisms(self) -> list[Mechanism]:
        """The reserved rounds, as the accountant composes them."""
        return [self.mechanism] * self.remaining


def _reservation(row: sqlite3.Row) -> Reservation:
    mech = Mechanism(noise_multiplier=row["noise_multiplier"], sample_rate=row["sample_rate"],
                     steps=row["steps"], max_grad_norm=row["max_grad_norm"],
                     accountant=row["accountant"], unit=row["unit"])
    return Reservation(run_id=row["run_id"], next_round=row["next_round"],
                       last_round=row["last_round"], mechanism=mech,
                       reserved_at=row["reserved_at"], updated_at=row["updated_at"])


def _has_table(ledger: SiteLedger) -> bool:
    """A ledger written before reservations existed, opened read-only, has no such table."""
    row = ledger.connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='reservations'").fetchone()
    return row is not None


def reservations(ledger: SiteLedger, *, except_run: str | None = None) -> list[Reservation]:
    """Every live reservation (but ``except_run``'s), oldest first."""
    if not _has_table(ledger):
        return []
    columns = _COLUMNS.replace("unit", unit_column(ledger.connection, "reservations"))
    rows = ledger.connection.execute(
        f"SELECT {columns} FROM reservations ORDER BY reserved_at, run_id").fetchall()
    return [r for r in map(_reservation, rows) if r.run_id != except_run]


def reserve(ledger: SiteLedger, *, run_id: str, next_round: int, last_round: int,
            mechanism: Mechanism) -> None:
    """Write or refresh ``run_id``'s reservation: rounds ``next_round`` .. ``last_round``."""
    now = datetime.now(UTC).isoformat()
    m = mechanism
    with ledger.transaction() as conn:
        conn.execute(
            f"INSERT INTO reservations({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(run_id) DO UPDATE SET next_round=excluded.next_round, "
            "last_round=excluded.last_round, noise_multiplier=excluded.noise_multiplier, "
            "sample_rate=excluded.sample_rate, steps=excluded.steps, "
            "max_grad_norm=excluded.max_grad_norm, accountant=excluded.accountant, "
            "updated_at=excluded.updated_at, unit=excluded.unit",
            (run_id, int(next_round), int(last_round), m.noise_multiplier, m.sample_rate,
             m.steps, m.max_grad_norm, m.accountant, now, now, m.unit))


def advance(ledger: SiteLedger, *, run_id: str, recorded_round: int) -> None:
    """After round ``recorded_round`` of the run is recorded: the reservation starts after it,
    and is released once nothing is left of it."""
    now = datetime.now(UTC).isoformat()
    with ledger.transaction() as conn:
        conn.execute("UPDATE reservations SET next_round=MAX(next_round, ?), updated_at=? "
                     "WHERE run_id=?", (int(recorded_round) + 1, now, run_id))
        conn.execute("DELETE FROM reservations WHERE run_id=? AND next_round > last_round",
                     (run_id,))


def release(ledger: SiteLedger, run_id: str) -> bool:
    """Drop ``run_id``'s reservation; whether there was one."""
    with ledger.transaction() as conn:
        cursor = conn.execute("DELETE FROM reservations WHERE run_id=?", (run_id,))
    return cursor.rowcount > 0
