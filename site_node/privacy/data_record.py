"""Which data each run trained on: the fingerprint the site recorded with the run's first round.

The ledger's ``data_fingerprints`` table (append-only) holds one row per run: the SHA-256 of the
site's training data (:func:`site_node.data.fingerprint.data_fingerprint`), written in the same
transaction as the run's first trained round. A later round of that run on other data (a resumed
run given another file) is refused before any training: one run, one data set per site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from site_node.privacy.ledger import SiteLedger

#: Characters of a fingerprint shown in a refusal.
SHORT = 12


@dataclass(frozen=True)
class DataRecord:
    """The data a run first trained on at this site."""

    run_id: str
    data_sha256: str
    round: int
    recorded_at: str


def recorded(ledger: SiteLedger, run_id: str) -> DataRecord | None:
    """The fingerprint recorded for ``run_id`` (None before its first trained round)."""
    exists = ledger.connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                       "name='data_fingerprints'").fetchone()
    if exists is None:
        return None
    row = ledger.connection.execute("SELECT run_id, data_sha256, round, recorded_at FROM "
                                    "data_fingerprints WHERE run_id=?", (run_id,)).fetchone()
    return None if row is None else DataRecord(row["run_id"], row["data_sha256"], row["round"],
                                                row["recorded_at"])


def record(ledger: SiteLedger, *, run_id: str, rnd: int, data_sha256: str) -> None:
    """Record the run's data with its first trained round (kept as it is if already there)."""
    if recorded(ledger, run_id) is not None:
        return
    with ledger.transaction() as conn:
        conn.execute("INSERT INTO data_fingerprints(run_id, data_sha256, round, recorded_at) "
                     "VALUES (?,?,?,?)", (run_id, data_sha256, int(rnd),
                                          datetime.now(UTC).isoformat()))


def mismatch(ledger: SiteLedger, *, site: str, run_id: str, rnd: int,
             data_sha256: str) -> str | None:
    """Why round ``rnd`` must be refused because the data changed within the run (or None)."""
    first = recorded(ledger, run_id)
    if first is None or first.data_sha256 == data_sha256:
        return None
    return (f"site {site} refuses round {rnd} of run {run_id}: its training data changed within "
            f"the run (sha256 {first.data_sha256[:SHORT]}… in round {first.round}, "
            f"{data_sha256[:SHORT]}… now); a run trains on one data set; nothing was spent")
