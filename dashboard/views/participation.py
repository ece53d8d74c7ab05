"""Participation and secure aggregation: who took part, dropouts, failed rounds, SecAgg+."""

from __future__ import annotations

import streamlit as st

from consortium.store.records import ROUND_OK
from dashboard import charts, data, frames, ui


def render() -> None:
    """Draw the Participation and secure aggregation page."""
    st.title("Participation and secure aggregation")
    ui.live(_body)


def _body(rd: data.RunData) -> None:
    run = rd.run
    ui.run_header(rd)
    _secagg(run.secagg_json)
    if ui.no_rounds_yet(rd):
        return
    site_ids = frames.run_sites(run, rd.sites)
    part = frames.participation_frame(run, rd.rounds, rd.sites)
    st.subheader("Who took part")
    st.altair_chart(charts.participation_chart(part, site_ids), width="stretch")

    failed = rd.rounds[rd.rounds["status"] != ROUND_OK]
    for rnd in failed.itertuples():
        st.error(f"Round {rnd.round} failed: {rnd.failure_reason or 'no reason recorded'}",
                 icon=":material/error:")
    drops = part[part["participation"] == frames.DROPPED_OUT]
    if drops.empty:
        st.success("No dropouts: every site of the run reported in every completed round.",
                   icon=":material/check_circle:")
    else:
        summary = drops.groupby("site_name")["round"].apply(
            lambda r: ", ".join(str(x) for x in r)
        )
        st.warning("Dropouts: " + "; ".join(f"{name} (round {rounds})"
                                            for name, rounds in summary.items()),
                   icon=":material/person_off:")

    refused = rd.sites[rd.sites["refusal"].notna()].sort_values(["round", "site"])
    for row in refused.itertuples():
        st.warning(f"Round {row.round}: {row.site_name} refused: {row.refusal}",
                   icon=":material/block:")

    st.subheader("Rounds")
    st.altair_chart(charts.duration_chart(rd.rounds), width="stretch")
    st.dataframe(
        rd.rounds[["round", "status", "sites_trained", "duration_s", "started_at",
                   "finished_at", "failure_reason"]],
        hide_index=True,
        column_config={"duration_s": st.column_config.NumberColumn("Seconds", format="%.1f"),
                       "sites_trained": "Sites trained", "failure_reason": "Failure"},
    )


def _secagg(secagg_json: str) -> None:
    st.subheader("SecAgg+ parameters")
    params, error = frames.parse_json(secagg_json)
    if error:
        st.warning(f"The run's SecAgg+ parameters are unreadable ({error}).")
        return
    shown = [("num_shares", "Shares"), ("reconstruction_threshold", "Reconstruction threshold"),
             ("timeout_s", "Timeout (s)"), ("clipping_range", "Clipping range")]
    cols = st.columns(len(shown))
    for col, (key, label) in zip(cols, shown, strict=True):
        col.metric(label, str(params.get(key, "–")))
    with st.expander("All SecAgg+ parameters"):
        st.table(frames.params_frame(params).set_index("parameter"))


if __name__ == "__main__":
    render()
