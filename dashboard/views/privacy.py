"""Privacy budget: the audit verdict, each site's cumulative ε against the run's ceiling
(checked against the sites' signed receipts), and what is left."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from consortium.errors import StoreError
from consortium.store.export import privacy_unit
from consortium.store.records import RUN_RUNNING
from dashboard import charts, data, frames, ui, verdict_panel
from dashboard.verdict import epsilon_cross_check


def render() -> None:
    """Draw the Privacy budget page."""
    st.title("Privacy budget")
    ui.live(_body)


def _body(rd: data.RunData) -> None:
    run = rd.run
    verdict_panel.show_verdict(ui.current_store(), run.run_id)
    ui.run_header(rd)
    unit = privacy_unit(run.task_json)
    st.markdown(f"Per-site ceiling **ε = {run.epsilon_ceiling:g}** at **δ = {run.delta:g}**, "
                f"**{unit}-level**: every ε on this page protects one {unit}"
                + (" with all their records" if unit == "patient" else "") + ". "
                "Each site's ε is cumulative: every round it trained in is composed in.")
    if ui.no_rounds_yet(rd):
        return
    _cross_check(ui.current_store(), run.run_id, rd.sites)
    site_ids = frames.run_sites(run, rd.sites)
    if rd.sites["epsilon"].notna().any():
        st.altair_chart(charts.epsilon_chart(rd.sites, site_ids, run.epsilon_ceiling, run.delta,
                                             unit=unit), width="stretch")
    else:
        st.info("No site has reported an ε for this run yet.")

    budget = frames.budget_frame(run, rd.sites)
    rounds_left = max(run.rounds_planned - int(rd.rounds["round"].max()), 0)
    st.subheader("Remaining budget")
    cols = st.columns(max(len(site_ids), 1))
    for col, row in zip(cols, budget.itertuples(), strict=False):
        forecast = ("no ε spent yet" if row.rounds_affordable is None
                    else f"≈ {row.rounds_affordable} more rounds")
        col.metric(row.site_name, f"ε {row.epsilon:.2f} / {row.ceiling:g}",
                   delta=f"{row.remaining:.2f} left · {forecast}", delta_color="off",
                   border=True, help=f"Site id `{row.site}`; last ε reported in round "
                   f"{row.last_round}")
    st.dataframe(
        budget.drop(columns=["site", "ceiling"]), hide_index=True,
        column_config={
            "site_name": "Site", "epsilon": st.column_config.NumberColumn("ε spent", format="%.3f"),
            "remaining": st.column_config.NumberColumn("ε remaining", format="%.3f"),
            "used_pct": st.column_config.ProgressColumn("Budget used", format="%.0f%%",
                                                        min_value=0, max_value=100),
            "rate": st.column_config.NumberColumn("ε per round (latest)", format="%.3f"),
            "rounds_affordable": st.column_config.NumberColumn("Rounds affordable (linear)"),
            "last_round": "Last round",
        },
    )
    short = budget[budget["rounds_affordable"].notna()
                   & (budget["rounds_affordable"] < rounds_left)]
    if run.status == RUN_RUNNING and not short.empty:
        st.warning("At the current rate these sites reach the ceiling before the "
                   f"{rounds_left} planned rounds left: " + ", ".join(short["site_name"]),
                   icon=":material/warning:")
    st.caption(
        "**Forecast: a linear estimate.** Rounds affordable = remaining ε ÷ the ε the site's "
        "latest round added. Under composition ε grows sublinearly in the number of rounds, so "
        "later rounds cost less and this estimate is conservative: a site can usually afford "
        "at least this many rounds. The server's accountant, not this forecast, enforces the "
        "ceiling."
    )
    _lifetime(ui.current_store(), run.run_id)


def _cross_check(path: str, run_id: str, sites: pd.DataFrame) -> None:
    """Compare the ε figures drawn below (the unsigned rounds table) with the signed receipts."""
    try:
        receipts = data.load_audit_tables(path, run_id)["receipts"]
    except StoreError as exc:
        ui.show_store_error(path, exc)
        return
    check = epsilon_cross_check(sites, receipts)
    if check.mismatches:
        st.error(f"**{len(check.mismatches)} ε figure(s) below differ from the sites' signed "
                 "receipts** (the figures come from the unsigned rounds table; the receipts "
                 "are what the sites signed):\n\n"
                 + "\n".join(f"- {m}" for m in check.mismatches), icon=":material/gpp_bad:")
    if check.unsigned and not check.signed and not check.mismatches:
        st.warning("**No ε on this page is signed**: the store holds no signed receipt for this "
                   "run, so these figures come from the unsigned rounds table only.",
                   icon=":material/gpp_maybe:")
    elif check.unsigned:
        st.warning(f"**{len(check.unsigned)} ε figure(s) below have no signed receipt** "
                   "(unsigned rounds table only):\n\n"
                   + "\n".join(f"- {u}" for u in check.unsigned), icon=":material/gpp_maybe:")
    elif check.signed and not check.mismatches:
        st.caption(f"All {check.signed} ε figures below equal the sites' signed receipts.")


def _lifetime(path: str, run_id: str) -> None:
    st.subheader("Lifetime budget")
    try:
        receipts = data.load_audit_tables(path, run_id)["receipts"]
    except StoreError as exc:
        ui.show_store_error(path, exc)
        return
    life = frames.lifetime_frame(receipts, run_id)
    if life.empty:
        st.info("Each site keeps its lifetime budget (every run it ever joined) in its own "
                "ledger; it appears here once the store holds the sites' signed receipts.",
                icon=":material/account_balance:")
        return
    st.dataframe(
        life.drop(columns=["site"]), hide_index=True,
        column_config={
            "site_name": "Site", "round": "As of round",
            "lifetime_epsilon": st.column_config.NumberColumn("Lifetime ε", format="%.3f"),
            "lifetime_ceiling": st.column_config.NumberColumn("Lifetime ceiling", format="%g"),
            "remaining": st.column_config.NumberColumn("Remaining", format="%.3f"),
            "used_pct": st.column_config.ProgressColumn("Lifetime budget used", format="%.0f%%",
                                                        min_value=0, max_value=100),
            "delta": st.column_config.NumberColumn("δ (site's)", format="%g"),
        },
    )
    st.caption("From each site's latest signed receipt in this run: its ledger composes every "
               "DP round it has ever trained, across runs, with a real accountant. Verify the "
               "receipts with `consortium audit verify`.")


if __name__ == "__main__":
    render()
