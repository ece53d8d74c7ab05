"""Comparison: why a hospital joins. Each site's local-only model against the federated model,
per class, on the site's own test set and on the union of the sites' test sets."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from consortium.errors import StoreError
from dashboard import charts, data, ui

SCOPES = {"own": "Each site's own test set", "union": "The union of every site's test set"}


def render() -> None:
    """Draw the Comparison page."""
    st.title("Local versus federated")
    chosen = ui.selected_run()
    if chosen is None:
        return
    path, run_id = chosen
    try:
        frame = data.load_comparisons(path)
    except StoreError as exc:
        ui.show_store_error(path, exc)
        return
    if frame.empty:
        st.info("The store holds no comparison yet. Run `consortium compare` (for instance "
                "`consortium compare --example digits`) to train each site alone and the "
                "federated model with the same privacy budget.", icon=":material/compare:")
        return
    _body(frame, run_id)


def _choose(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    involved = frame[(frame["federated_run_id"] == run_id) | (frame["local_run_id"] == run_id)]
    pool = involved if not involved.empty else frame
    ids = list(dict.fromkeys(pool.sort_values("created_at", ascending=False)["comparison_id"]))
    if involved.empty:
        st.caption("The selected run is not part of a comparison; showing the store's "
                   "comparisons.")
    labels = {c: f"{pool[pool['comparison_id'] == c]['created_at'].iloc[0][:16]} · "
                 f"federated run {pool[pool['comparison_id'] == c]['federated_run_id'].iloc[0][:8]}"
              for c in ids}
    cid = st.selectbox("Comparison", ids, format_func=labels.__getitem__)
    return frame[frame["comparison_id"] == cid]


def _summary(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, group in cells.groupby("site", sort=True):
        unseen = set(group[(group["site_train_count"] == 0)]["class_index"])
        row: dict[str, object] = {"site": group["site_name"].iloc[0],
                                  "classes never trained": ", ".join(sorted(
                                      group[group["class_index"].isin(unseen)]["class_name"]
                                      .unique())) or "none"}
        for model in ("local", "federated"):
            mine = group[group["model"] == model]
            row[f"{model}: all classes"] = _pooled(mine)
            row[f"{model}: never-trained classes"] = _pooled(
                mine[mine["class_index"].isin(unseen)]) if unseen else None
        rows.append(row)
    return pd.DataFrame(rows)


def _pooled(cells: pd.DataFrame) -> float | None:
    total = int(cells["total"].sum())
    return float(cells["correct"].sum()) / total if total else None


def _body(frame: pd.DataFrame, run_id: str) -> None:
    cells = _choose(frame, run_id)
    first = cells.iloc[0]
    local = sorted(cells[["site_name", "local_run_id"]].drop_duplicates().itertuples(
        index=False))
    st.markdown(f"Federated run `{first['federated_run_id']}`; local-only runs "
                + ", ".join(f"{name} `{rid}`" for name, rid in local)
                + ". Each local run used the same DP mechanism and rounds as the federated "
                "run, so each site spent the same ε twice (see the Privacy budget page of "
                "each run).")
    scope = st.radio("Test set", list(SCOPES), format_func=SCOPES.__getitem__,
                     horizontal=True)
    shown = cells[cells["scope"] == scope]
    st.altair_chart(charts.comparison_heatmap(shown, "Test accuracy per class: local-only "
                                                     "vs federated"), width="stretch")
    st.caption("A value marked `*` is a local model on a class its site holds no training "
               "example of: that model never saw the class.")
    st.subheader("Per site")
    st.dataframe(_summary(shown), hide_index=True, column_config={
        c: st.column_config.NumberColumn(c, format="percent")
        for c in ("local: all classes", "local: never-trained classes",
                  "federated: all classes", "federated: never-trained classes")})


if __name__ == "__main__":
    render()
