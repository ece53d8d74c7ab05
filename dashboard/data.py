"""Cached, read-only access to the run store.

Every loader opens the store read-only, reads, closes it and returns plain pandas values, so
the cache holds no connection. The cache lives ``TTL_S`` seconds, short enough for a live run
to show its new rounds. Failures come back as :class:`StoreError` with a readable message.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from consortium.audit.log import AuditEntry, AuditLog, StoredReceipt
from consortium.errors import StoreError
from consortium.store.comparisons import comparisons
from consortium.store.owner import owner_gone
from consortium.store.records import RUN_RUNNING, RunRecord, RunStatus
from consortium.store.run_store import RunStore
from dashboard import frames

log = logging.getLogger(__name__)

#: Seconds a cached read stays valid.
TTL_S = 2.0

_RECEIPT_COLUMNS = tuple(f.name for f in fields(StoredReceipt))
_ENTRY_COLUMNS = tuple(f.name for f in fields(AuditEntry))


@dataclass(frozen=True)
class RunData:
    """Everything the pages show about one run.

    Attributes
    ----------
    run : RunRecord
        The run itself.
    rounds : pandas.DataFrame
        One row per recorded round (:func:`dashboard.frames.rounds_frame`).
    sites : pandas.DataFrame
        One row per (round, site) figure (:func:`dashboard.frames.sites_frame`).
    """

    run: RunRecord
    rounds: pd.DataFrame
    sites: pd.DataFrame


@contextmanager
def open_store(path: str | Path) -> Iterator[RunStore]:
    """Open the store read-only, turning every failure into :class:`StoreError`."""
    try:
        store = RunStore(path, readonly=True)
    except StoreError:
        raise
    except (sqlite3.Error, OSError, ValueError) as exc:
        raise StoreError(f"cannot open run store {path}: {exc}") from exc
    try:
        yield store
    except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"run store {path} could not be read: {exc}") from exc
    finally:
        store.close()


KILLED = RunStatus.KILLED


def shown_status(run: RunRecord) -> RunStatus:
    """The status to show: a ``running`` run whose process on this host is gone was killed."""
    if run.status == RUN_RUNNING and owner_gone(run.owner):
        return KILLED
    return run.status


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_runs(path: str) -> pd.DataFrame:
    """All runs of the store, newest first (:func:`dashboard.frames.runs_frame`)."""
    with open_store(path) as store:
        runs = [replace(r, status=shown_status(r)) for r in store.list_runs()]
        rounds = {run.run_id: store.rounds(run.run_id) for run in runs}
    log.debug("read %d runs from %s", len(runs), path)
    return frames.runs_frame(runs, rounds)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_run(path: str, run_id: str) -> RunData:
    """One run with its rounds and site figures."""
    with open_store(path) as store:
        run = store.get_run(run_id)
        run = replace(run, status=shown_status(run))
        rounds = store.rounds(run_id)
    return RunData(run=run, rounds=frames.rounds_frame(rounds), sites=frames.sites_frame(rounds))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_audit_tables(path: str, run_id: str) -> dict[str, pd.DataFrame]:
    """One run's signed receipts and audit log entries, in order (empty frames if none)."""
    with open_store(path) as store:
        audit = AuditLog(store.db)
        receipts = [asdict(r) for r in audit.receipts(run_id)]
        entries = [asdict(e) for e in audit.entries(run_id)]
    return {"receipts": pd.DataFrame(receipts, columns=list(_RECEIPT_COLUMNS)),
            "audit_log": pd.DataFrame(entries, columns=list(_ENTRY_COLUMNS))}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_comparisons(path: str) -> pd.DataFrame:
    """Every comparison of the store, newest first (:func:`dashboard.frames.comparison_frame`;
    empty for a store written before comparisons existed)."""
    with open_store(path) as store:
        found = comparisons(store.db)
    return frames.comparison_frame(found)
