"""Overview: the runs, and the selected run's accuracy and loss per round."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from consortium.errors import StoreError
from consortium.store.records import ROUND_OK, beats_majority
from dashboard import charts, data, frames, ui
from dashboard.config import site_name


def render() -> None:
    """Draw the Overview page."""
    st.title("Overview")
    try:
        runs = ui.runs()
    except StoreError:
        runs = None
    if runs is not None and not runs.empty:
        with st.expander(f"All runs ({len(runs)})", expanded=len(runs) > 1):
            st.dataframe(runs, hide_index=True, column_config={
                "run_id": st.column_config.TextColumn("Run", width="small"),
                "rounds_done": "Rounds done", "rounds_failed": "Failed rounds",
                "rounds_planned": "Planned", "started_at": "Started", "finished_at": "Ended",
                "stop_reason": "Stop reason",
            })
    ui.live(_body)


def _body(rd: data.RunData) -> None:
    ui.run_header(rd)
    if ui.no_rounds_yet(rd):
        return
    site_ids = frames.run_sites(rd.run, rd.sites)
    ok = rd.rounds[rd.rounds["status"] == ROUND_OK]
    last = ok.iloc[-1] if len(ok) else None
    cols = st.columns(4)
    cols[0].metric("Rounds recorded", f"{len(rd.rounds)} / {rd.run.rounds_planned}")
    cols[1].metric("Failed rounds", int((rd.rounds["status"] != ROUND_OK).sum()))
    if last is not None:
        cols[2].metric("Global accuracy (weighted)", _pct(last["accuracy_weighted"]))
        cols[3].metric("Global loss (weighted)", _num(last["loss_weighted"]))

    st.subheader("Global model")
    left, right = st.columns(2)
    left.altair_chart(charts.global_metrics_chart(rd.rounds, "accuracy", "Global accuracy"),
                      width="stretch")
    right.altair_chart(charts.global_metrics_chart(rd.rounds, "loss", "Global loss"),
                       width="stretch")

    st.subheader("Sites")
    latest = rd.sites.dropna(subset=["accuracy"]).sort_values("round").groupby("site").last()
    _majority_warning(latest)
    site_cols = st.columns(max(len(site_ids), 1))
    for col, site in zip(site_cols, site_ids, strict=False):
        if site in latest.index:
            row = latest.loc[site]
            col.metric(site_name(site), _pct(row["accuracy"]), help=f"Site id `{site}`; "
                       f"accuracy after round {int(row['round'])}, beside the share of its "
                       "test set in its most frequent class (a model that predicts that "
                       "class for everything scores it)",
                       delta=f"majority class {_pct(row['majority_rate'])}",
                       delta_color="off", border=True)
        else:
            col.metric(site_name(site), "–", help=f"Site id `{site}`; no accuracy yet",
                       border=True)
    st.altair_chart(charts.site_accuracy_chart(rd.sites, site_ids), width="stretch")


def _majority_warning(latest: pd.DataFrame) -> None:
    """A red banner naming the sites where the latest model does not beat the majority
    class: never silent about a model that learned nothing."""
    below = [str(site) for site, row in latest.iterrows()
             if beats_majority(_float(row["accuracy"]), _float(row["majority_rate"])) is False]
    if below:
        everywhere = len(below) == len(latest)
        st.error(("The model does not beat the majority-class rate at any site: it learned "
                  "nothing. " if everywhere else "The model does not beat the majority-class "
                  f"rate at {', '.join(site_name(s) for s in below)}. ")
                 + "Its accuracy there is what predicting the most frequent class scores.",
                 icon="⚠️")


def _float(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def _pct(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.1%}"


def _num(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.3f}"


if __name__ == "__main__":
    render()
