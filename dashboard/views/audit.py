"""Audit: the policy in force with its hash, the per-round mechanism, receipts when present."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from consortium.errors import ConsortiumError, StoreError
from dashboard import data, frames, ui


def render() -> None:
    """Draw the Audit page."""
    st.title("Audit")
    ui.live(_body)


def _body(rd: data.RunData) -> None:
    run = rd.run
    ui.run_header(rd)
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
        st.success(f"All {len(hashes)} rounds that record a policy hash ran under this policy.",
                   icon=":material/verified:")
    policy, error = frames.parse_json(run.policy_json)
    with st.expander("Policy (canonical JSON)"):
        if error:
            st.warning(f"The stored policy is unreadable ({error}).")
        else:
            st.json(policy)

    st.subheader("Mechanism per round")
    st.caption(f"DP-SGD parameters each site reported; ε is cumulative at δ = {run.delta:g}. "
               "From these anyone can recompute each site's ε.")
    if rd.sites.empty:
        st.info("No site has reported mechanism parameters for this run yet.")
    else:
        st.dataframe(frames.mechanism_frame(rd.sites), hide_index=True, column_config={
            "site_name": "Site", "noise_multiplier": "Noise multiplier",
            "sample_rate": "Sample rate", "max_grad_norm": "Clipping norm",
            "epsilon": st.column_config.NumberColumn("ε (cumulative)", format="%.4f"),
        })
    _receipts(ui.current_store(), run.run_id)


def _receipts(path: str, run_id: str) -> None:
    st.subheader("Signed receipts and auditor report")
    try:
        tables = data.load_audit_tables(path, run_id)
    except StoreError as exc:
        ui.show_store_error(path, exc)
        return
    if tables["audit_log"].empty:
        st.info("This run has no audit log entries in this store yet: signed receipts and the "
                "auditor report appear here once the consortium server records them.",
                icon=":material/receipt_long:")
        return
    for name, table in tables.items():
        st.markdown(f"**{name}** ({len(table)} rows for this run)")
        st.dataframe(table, hide_index=True)
        st.download_button(f"Download {name} (CSV)", table.to_csv(index=False).encode(),
                           file_name=f"{run_id}-{name}.csv", mime="text/csv", key=f"dl-{name}")
    report = auditor_report(tables, run_id, path)
    if report is not None:
        st.download_button("Download auditor report (HTML)", report,
                           file_name=f"{run_id}-audit.html", mime="text/html")
    else:
        st.caption("The auditor report cannot be produced from this store yet.")


def auditor_report(
    tables: dict[str, pd.DataFrame], run_id: str, store_path: str | None = None
) -> bytes | None:
    """The auditor's HTML report for a run, or ``None`` while none can be produced.

    The report needs the run's signed audit log entries; it is built, verification included,
    by :mod:`consortium.audit.report`, which never imports torch, Flower or Opacus.
    It is cached per store, run and log length, so a page rerun does not re-verify.
    """
    log = tables.get("audit_log")
    if store_path is None or log is None or "run_id" not in log.columns:
        return None
    if not (log["run_id"] == run_id).any():
        return None
    return _report_html(store_path, run_id, len(log))


@st.cache_data(show_spinner="Verifying the audit trail…", max_entries=16)
def _report_html(store_path: str, run_id: str, entries: int) -> bytes | None:
    del entries  # part of the cache key only
    from consortium.audit.html import render_html
    from consortium.audit.report import build_report

    try:
        return render_html(build_report(store_path, run_id)).encode("utf-8")
    except (ConsortiumError, ValueError, KeyError, OSError):  # render whatever the store holds
        logging.getLogger(__name__).exception("auditor report for run %s failed", run_id)
        return None


if __name__ == "__main__":
    render()
