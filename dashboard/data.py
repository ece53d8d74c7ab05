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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from consortium.records import RunRecord
from consortium.store import RunStore, StoreError
from dashboard import frames

log = logging.getLogger(__name__)

#: Seconds a cached read stays valid.
TTL_S = 2.0

#: Tables an audit store may add; the Audit page shows whichever is present.
AUDIT_TABLES = ("receipts", "audit_log")


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


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_runs(path: str) -> pd.DataFrame:
    """All runs of the store, newest first (:func:`dashboard.frames.runs_frame`)."""
    with open_store(path) as store:
        runs = store.list_runs()
        rounds = {run.run_id: store.rounds(run.run_id) for run in runs}
    log.debug("read %d runs from %s", len(runs), path)
    return frames.runs_frame(runs, rounds)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_run(path: str, run_id: str) -> RunData:
    """One run with its rounds and site figures."""
    with open_store(path) as store:
        run = store.get_run(run_id)
        rounds = store.rounds(run_id)
    return RunData(run=run, rounds=frames.rounds_frame(rounds), sites=frames.sites_frame(rounds))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_audit_tables(path: str) -> dict[str, pd.DataFrame]:
    """The audit tables (:data:`AUDIT_TABLES`) the store holds, by name; empty if none."""
    with open_store(path) as store:
        present = [t for t in AUDIT_TABLES if t in store.table_names()]
        return {t: pd.DataFrame(store.table_rows(t)) for t in present}
