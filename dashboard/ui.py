"""Building blocks the pages share: store errors, the run selector, the run header, live reruns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import streamlit as st

from consortium.errors import StoreError
from consortium.store.records import (
    ENGINE_LOCAL,
    MODE_DEMO,
    RUN_ABANDONED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RunRecord,
    RunStatus,
)
from dashboard import data
from dashboard.config import STORE_HINT, store_path

log = logging.getLogger(__name__)

#: Seconds between refreshes of a page that shows a live run.
LIVE_EVERY_S = 3.0

STORE_KEY = "hc_store"
RUN_KEY = "hc_run"
_RUNS_MEMO = "_hc_runs_this_run"

_Colour = Literal["blue", "green", "orange", "red", "gray"]
_STATUS_COLOURS: dict[RunStatus, _Colour] = {
    RUN_RUNNING: "blue", RUN_COMPLETED: "green", RUN_STOPPED: "orange", RUN_FAILED: "red",
    RUN_INTERRUPTED: "orange", RUN_ABANDONED: "gray", RunStatus.KILLED: "red",
}


def current_store() -> str:
    """The run store path of this session (``--store``, or the consortium home's)."""
    if STORE_KEY not in st.session_state:
        st.session_state[STORE_KEY] = str(store_path())
    return str(st.session_state[STORE_KEY])


def start_script_run() -> None:
    """Forget the runs read by the previous script run (call first thing in every full run)."""
    st.session_state.pop(_RUNS_MEMO, None)


def runs() -> pd.DataFrame:
    """The store's runs, read at most once per script run; raises :class:`StoreError`.

    Reading once matters for a locked store: each attempt waits for SQLite's busy timeout.
    """
    memo = st.session_state.get(_RUNS_MEMO)
    if memo is None:
        try:
            memo = data.load_runs(current_store())
        except StoreError as exc:
            memo = exc
        st.session_state[_RUNS_MEMO] = memo
    if isinstance(memo, StoreError):
        raise memo
    return memo


def show_store_error(path: str, exc: StoreError) -> None:
    """Explain a store that cannot be read, with what to do about it."""
    log.warning("run store %s unreadable: %s", path, exc)
    if not Path(path).expanduser().exists():
        st.error(
            f"No run store at `{path}`. Start a run with `consortium run`, or point the "
            f"dashboard at a store with `consortium dashboard --store PATH` (default: "
            f"{STORE_HINT}).",
            icon=":material/folder_off:",
        )
        return
    st.error(f"The run store cannot be read: {exc}", icon=":material/error:")
    st.caption("A store that is locked or still being created by the server is retried on "
               "the next refresh; a file that is not a run store needs a different `--store`.")


def run_selector() -> None:
    """Sidebar: the store in use and a choice of run (newest first)."""
    path = current_store()
    st.sidebar.caption(f"Run store: `{path}`")
    try:
        frame = runs()
    except StoreError:
        return
    if frame.empty:
        return
    labels = {
        r.run_id: f"{r.started_at[:16].replace('T', ' ')} · {r.run_id[:8]} · {r.status}"
        for r in frame.itertuples()
    }
    st.sidebar.selectbox("Run", list(labels), format_func=labels.__getitem__, key=RUN_KEY)


def selected_run() -> tuple[str, str] | None:
    """The store and the chosen run id, or ``None`` after telling the user why there is none."""
    path = current_store()
    try:
        frame = runs()
    except StoreError as exc:
        show_store_error(path, exc)
        return None
    if frame.empty:
        st.info(f"The run store `{path}` holds no run yet. Runs appear here as soon as the "
                "consortium server starts one.", icon=":material/hourglass_empty:")
        return None
    run_id = st.session_state.get(RUN_KEY)
    if run_id not in set(frame["run_id"]):
        run_id = str(frame["run_id"].iloc[0])
    return path, str(run_id)


def run_header(rd: data.RunData) -> None:
    """One line about the run, and its progress while it is live."""
    run = rd.run
    st.markdown(f"**Run** `{run.run_id}` · {run.engine} · mode `{run.mode}` · seed {run.seed} · "
                f"started {_when(run.started_at)}" + (f" · ended {_when(run.finished_at)}"
                                                      if run.finished_at else ""))
    st.badge(run.status, color=_STATUS_COLOURS.get(run.status, "gray"))
    if run.mode == MODE_DEMO:
        st.caption("Local demonstration: one machine played every hospital and created the "
                   "sites' keys, so the receipts prove only what that machine attests.")
    if run.stop_reason:
        st.caption(f"Stop reason: {run.stop_reason}")
    if run.status == data.KILLED:
        st.warning("This run is recorded as running but the process running it is gone (killed "
                   "or crashed). " + _after_kill(run), icon=":material/heart_broken:")
    if run.status == RUN_RUNNING:
        done = len(rd.rounds)
        planned = max(run.rounds_planned, done, 1)
        since = rd.rounds["finished_at"].iloc[-1] if done else run.started_at
        st.progress(min(done / planned, 1.0),
                    text=f"Live: round {done + 1} of {planned} in progress "
                         f"(previous step finished {_when(since)}); refreshes every "
                         f"{LIVE_EVERY_S:g} s")


def _after_kill(run: RunRecord) -> str:
    """What the coordinator can do with a killed run."""
    if run.engine == ENGINE_LOCAL:
        return ("It is a site's local-only run of a comparison, which is never resumed: run "
                "`consortium compare` again (a resume would mark it abandoned).")
    return f"Continue it with `consortium run --resume --run {run.run_id}`."


def live(body: Callable[[data.RunData], None]) -> None:
    """Render ``body`` for the selected run, rerunning it every few seconds while it is live.

    The body runs inside ``st.fragment(run_every=...)`` when the run's status is ``running``,
    so only this part of the page refreshes. When the run ends, the whole app reruns once so
    that the fragment stops refreshing and the sidebar shows the new status.
    """
    chosen = selected_run()
    if chosen is None:
        return
    path, run_id = chosen
    try:
        first = data.load_run(path, run_id)
    except StoreError as exc:
        show_store_error(path, exc)
        return
    was_live = first.run.status == RUN_RUNNING

    @st.fragment(run_every=LIVE_EVERY_S if was_live else None)
    def _refresh() -> None:
        try:
            rd = data.load_run(path, run_id)
        except StoreError as exc:
            show_store_error(path, exc)
            return
        if was_live and rd.run.status != RUN_RUNNING:
            st.rerun()
        body(rd)

    _refresh()


def no_rounds_yet(rd: data.RunData) -> bool:
    """Say so and return True if the run has no recorded round yet."""
    if rd.rounds.empty:
        st.info("No round has been recorded for this run yet.", icon=":material/hourglass_top:")
        return True
    return False


def _when(iso: str | None) -> str:
    if not iso:
        return "–"
    stamp = pd.to_datetime(iso, utc=True, errors="coerce")
    if pd.isna(stamp):
        return str(iso)
    age = datetime.now(UTC) - stamp.to_pydatetime()
    text = str(stamp.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if 0 <= age.total_seconds() < 3600:
        text += f" ({int(age.total_seconds())} s ago)"
    return text
