"""Audit: the verdict first (what ``consortium audit verify`` says), then the DP-SGD mechanism
from the sites' signed receipts, the policy in force, the raw signed tables and the auditor's
HTML report."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from consortium.errors import StoreError
from dashboard import data, frames, ui, verdict_panel
from dashboard.verdict import Verdict, receipt_mechanism_frame, store_stamp

log = logging.getLogger(__name__)

REPORT_LABEL = "Download auditor report (HTML)"
BUILD_LABEL = "Build the auditor report"
#: Session key: the (store, run, store stamp) whose auditor report the user asked for.
REPORT_WANTED = "hc_report_wanted"


def render() -> None:
    """Draw the Audit page."""
    st.title("Audit")
    ui.live(_body)


def _body(rd: data.RunData) -> None:
    path, run = ui.current_store(), rd.run
    verdict = verdict_panel.show_verdict(path, run.run_id)
    ui.run_header(rd)
    try:
        tables = data.load_audit_tables(path, run.run_id)
    except StoreError as exc:
        ui.show_store_error(path, exc)
        return
    _mechanism(tables["receipts"], verdict, run.delta)
    _policy(rd)
    _signed_tables(tables, path, run.run_id)


def _mechanism(receipts: pd.DataFrame, verdict: Verdict | None, delta: float) -> None:
    st.subheader("Mechanism per receipt")
    if receipts.empty:
        st.info("No site has signed a receipt for this run in this store: no DP-SGD mechanism "
                "or ε of this run is vouched for by a site.", icon=":material/receipt_long:")
        return
    st.caption("What each site signed in its privacy receipt for each round it trained: the "
               "DP-SGD mechanism and its cumulative ε at its δ (the run's δ is "
               f"{delta:g}). *ε recomputed* is the verifier's own figure from these parameters, "
               "shown only when the trail verified.")
    st.dataframe(receipt_mechanism_frame(receipts, verdict).drop(columns=["site"]),
                 hide_index=True, column_config={
                     "round": "Round", "site_name": "Site", "steps": "Steps",
                     "accountant": "Accountant", "problem": "Problem",
                     "noise_multiplier": "Noise multiplier",
                     "sample_rate": "Sample rate", "max_grad_norm": "Clipping norm",
                     "delta": st.column_config.NumberColumn("δ", format="%g"),
                     "epsilon": st.column_config.NumberColumn("ε signed (cumulative)",
                                                              format="%.4f"),
                     "recomputed_epsilon": st.column_config.NumberColumn("ε recomputed",
                                                                         format="%.4f"),
                     "epsilon_ceiling": "Ceiling", "lifetime_epsilon": st.column_config
                     .NumberColumn("Lifetime ε", format="%.4f"),
                     "lifetime_epsilon_ceiling": "Lifetime ceiling",
                     "num_examples": "Examples", "key_fingerprint": "Site key",
                 })


def _policy(rd: data.RunData) -> None:
    run = rd.run
    st.subheader("Policy in force")
    st.markdown("SHA-256 of the policy the run was started under:")
    st.code(run.policy_sha256, language=None)
    hashes = rd.rounds["policy_sha256"].dropna() if not rd.rounds.empty else pd.Series([])
    mismatched = sorted(int(r) for r in rd.rounds.loc[hashes.index[hashes != run.policy_sha256],
                                                       "round"])
    if mismatched:
        st.error("These rounds ran under a different policy hash: "
                 + ", ".join(map(str, mismatched)), icon=":material/gpp_bad:")
    elif len(hashes):
        st.caption(f"The (unsigned) rounds table records this hash for all {len(hashes)} "
                   "rounds that record one; the verdict above checks the signed receipts "
                   "against it.")
    policy, error = frames.parse_json(run.policy_json)
    with st.expander("Policy (canonical JSON)"):
        if error:
            st.warning(f"The stored policy is unreadable ({error}).")
        else:
            st.json(policy)


def _signed_tables(tables: dict[str, pd.DataFrame], path: str, run_id: str) -> None:
    st.subheader("Signed records and auditor report")
    if tables["audit_log"].empty:
        st.info("This run has no audit log entries in this store: signed receipts and the "
                "auditor report appear here once the consortium server records them.",
                icon=":material/receipt_long:")
        return
    for name, table in tables.items():
        st.markdown(f"**{name}** ({len(table)} rows for this run)")
        st.dataframe(table, hide_index=True)
        st.download_button(f"Download {name} (CSV)", table.to_csv(index=False).encode(),
                           file_name=f"{run_id}-{name}.csv", mime="text/csv", key=f"dl-{name}")
    _report(path, run_id)


def _report(path: str, run_id: str) -> None:
    """The auditor's report, built when asked for, of the store as it is then: it verifies
    the trail once more, which takes seconds per dozen receipts, so a page load (and each round
    of a live run) pays for one verification, not two."""
    asked = (path, run_id, store_stamp(path))
    if st.session_state.get(REPORT_WANTED) != asked:
        if st.button(BUILD_LABEL, key="build-report", icon=":material/description:"):
            st.session_state[REPORT_WANTED] = asked
        else:
            st.caption("The report (`consortium audit report`) is self-contained HTML: the "
                       "verdict, every receipt with its recomputed ε, refusals and security "
                       "events, the threat model and the key fingerprints.")
            return
    try:
        html = report_html(path, run_id)
    except Exception as exc:  # shown, never swallowed; not cached, so the next rerun retries
        log.exception("auditor report for run %s failed", run_id)
        st.error(f"The auditor report could not be built: {type(exc).__name__}: {exc}",
                 icon=":material/error:")
        return
    st.download_button(REPORT_LABEL, html, file_name=f"{run_id}-audit.html", mime="text/html")


def report_html(path: str, run_id: str) -> bytes:
    """The auditor's HTML report of a run (verification included), built by
    :mod:`consortium.audit.report`, cached until the store changes; raises what building it
    raised."""
    return _report_html(path, run_id, store_stamp(path))


@st.cache_data(show_spinner="Building the auditor report…", max_entries=16)
def _report_html(path: str, run_id: str, stamp: tuple[int, ...]) -> bytes:
    del stamp  # part of the cache key only
    from consortium.audit.html import render_html
    from consortium.audit.report import build_report

    return render_html(build_report(path, run_id)).encode("utf-8")


if __name__ == "__main__":
    render()
