"""Altair charts of the dashboard.

Every chart colours a site the same way (:func:`dashboard.config.site_colour`), shows the
figures under the pointer as a tooltip and fills the width of its container.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from consortium.store.records import ROUND_FAILED, ROUND_OK
from dashboard.config import site_colour, site_name
from dashboard.frames import PARTICIPATION_STATES

HEIGHT = 340

_PARTICIPATION_COLOURS = ("#3a7d44", "#c9c9c9", "#f2b134", "#b22222")
_ROUND_STATUS = alt.Scale(domain=[ROUND_OK.value, ROUND_FAILED.value], range=["#6c8ebf", "#b22222"])


def site_scale(sites: Sequence[str]) -> alt.Scale:
    """Colour scale over the sites' display names, with each site's fixed colour."""
    return alt.Scale(
        domain=[site_name(s) for s in sites], range=[site_colour(s) for s in sites]
    )


def _site_colour(sites: Sequence[str]) -> alt.Color:
    return alt.Color("site_name:N", title="Site", scale=site_scale(sites),
                     legend=alt.Legend(orient="right", labelLimit=220))


def global_metrics_chart(rounds: pd.DataFrame, metric: str, title: str) -> alt.Chart:
    """Global ``metric`` (``accuracy`` or ``loss``) per round, weighted and unweighted.

    Parameters
    ----------
    rounds : pandas.DataFrame
        :func:`dashboard.frames.rounds_frame` of the run.
    metric : str
        ``"accuracy"`` or ``"loss"``.
    title : str
        Chart title.
    """
    data = rounds[["round", f"{metric}_weighted", f"{metric}_mean"]].rename(columns={
        f"{metric}_weighted": "weighted by test examples", f"{metric}_mean": "mean of sites",
    }).melt("round", var_name="aggregate", value_name=metric).dropna(subset=[metric])
    fmt = ".1%" if metric == "accuracy" else ".3f"
    chart: alt.Chart = alt.Chart(data, title=title, height=HEIGHT).mark_line(point=True).encode(
        x=alt.X("round:Q", title="Round", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y(f"{metric}:Q", title=metric.capitalize(), scale=alt.Scale(zero=False),
                axis=alt.Axis(format=fmt)),
        color=alt.Color("aggregate:N", title=None, legend=alt.Legend(orient="bottom"),
                        scale=alt.Scale(range=["#333333", "#999999"])),
        strokeDash=alt.StrokeDash("aggregate:N", legend=None),
        tooltip=[alt.Tooltip("round:Q", title="Round"), alt.Tooltip("aggregate:N"),
                 alt.Tooltip(f"{metric}:Q", format=fmt)],
    )
    return chart


def site_accuracy_chart(sites: pd.DataFrame, site_ids: Sequence[str]) -> alt.Chart:
    """Each site's test accuracy per round, in the site's colour."""
    data = sites.dropna(subset=["accuracy"])[["round", "site_name", "accuracy", "loss", "trained"]]
    chart: alt.Chart = alt.Chart(data, title="Accuracy at each site", height=HEIGHT).mark_line(
        point=True
    ).encode(
        x=alt.X("round:Q", title="Round", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("accuracy:Q", title="Accuracy", scale=alt.Scale(zero=False),
                axis=alt.Axis(format=".0%")),
        color=_site_colour(site_ids),
        tooltip=[alt.Tooltip("site_name:N", title="Site"), alt.Tooltip("round:Q", title="Round"),
                 alt.Tooltip("accuracy:Q", format=".1%"), alt.Tooltip("loss:Q", format=".3f"),
                 alt.Tooltip("trained:N", title="Trained")],
    )
    return chart


def epsilon_chart(
    sites: pd.DataFrame, site_ids: Sequence[str], ceiling: float, delta: float, *,
    unit: str = "record",
) -> alt.LayerChart:
    """Each site's cumulative ε per round against the run's ε ceiling (a red rule)."""
    data = sites.dropna(subset=["epsilon"])[
        ["round", "site_name", "epsilon", "noise_multiplier", "sample_rate", "steps"]
    ]
    top = max(ceiling, float(data["epsilon"].max())) if len(data) else ceiling
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("round:Q", title="Round", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("epsilon:Q", title=f"Cumulative {unit}-level ε (δ = {delta:g})",
                scale=alt.Scale(domain=[0, top * 1.08])),
        color=_site_colour(site_ids),
        tooltip=[alt.Tooltip("site_name:N", title="Site"), alt.Tooltip("round:Q", title="Round"),
                 alt.Tooltip("epsilon:Q", title="ε", format=".3f"),
                 alt.Tooltip("noise_multiplier:Q", title="Noise multiplier", format=".3f"),
                 alt.Tooltip("sample_rate:Q", title="Sample rate", format=".4f"),
                 alt.Tooltip("steps:Q", title="Steps")],
    )
    rule_data = pd.DataFrame({"ceiling": [ceiling], "label": [f"ceiling ε = {ceiling:g}"]})
    rule = alt.Chart(rule_data).mark_rule(color="#b22222", strokeDash=[6, 4], size=2).encode(
        y="ceiling:Q", tooltip=[alt.Tooltip("label:N", title="Run ceiling")]
    )
    label = alt.Chart(rule_data).mark_text(
        align="left", dx=4, dy=-7, color="#b22222", fontWeight="bold"
    ).encode(y="ceiling:Q", x=alt.value(0), text="label:N")
    return alt.LayerChart(layer=[lines, rule, label]).properties(
        title="Cumulative privacy loss ε per site", height=HEIGHT + 40
    )


def participation_chart(part: pd.DataFrame, site_ids: Sequence[str]) -> alt.Chart:
    """A round × site grid: who took part, who dropped out, which rounds failed."""
    # A discrete y axis cannot be fitted to a height: give each site a fixed band instead.
    base = alt.Chart(part, title="Participation per round", height=alt.Step(34))
    chart: alt.Chart = base.mark_rect(stroke="white", strokeWidth=1).encode(
        x=alt.X("round:O", title="Round", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("site_name:N", title=None, sort=[site_name(s) for s in site_ids],
                axis=alt.Axis(labelLimit=240)),
        color=alt.Color("participation:N", title="Participation",
                        scale=alt.Scale(domain=list(PARTICIPATION_STATES),
                                        range=list(_PARTICIPATION_COLOURS)),
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("site_name:N", title="Site"), alt.Tooltip("round:O", title="Round"),
                 alt.Tooltip("participation:N"),
                 alt.Tooltip("failure_reason:N", title="Failure")],
    )
    return chart


def duration_chart(rounds: pd.DataFrame) -> alt.Chart:
    """Wall-clock time of each round, failed rounds in red."""
    data = rounds[["round", "status", "duration_s", "sites_trained", "failure_reason"]]
    base = alt.Chart(data, title="Time per round", height=HEIGHT - 40)
    chart: alt.Chart = base.mark_bar().encode(
        x=alt.X("round:O", title="Round", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("duration_s:Q", title="Seconds"),
        color=alt.Color("status:N", title="Round status", scale=_ROUND_STATUS,
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("round:O", title="Round"), alt.Tooltip("status:N"),
                 alt.Tooltip("duration_s:Q", title="Seconds", format=".1f"),
                 alt.Tooltip("sites_trained:Q", title="Sites trained"),
                 alt.Tooltip("failure_reason:N", title="Failure")],
    )
    return chart


def comparison_heatmap(cells: pd.DataFrame, title: str) -> alt.LayerChart:
    """Per class (columns) and per site and model (rows): test accuracy as colour and text.

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`dashboard.frames.comparison_frame` rows of one comparison and one scope.
    title : str
        Chart title.
    """
    data = cells[["row", "site_name", "model", "class_index", "class_name", "accuracy",
                  "correct", "total", "site_train_count", "label"]]
    classes = [str(c) for c in data.sort_values("class_index")["class_name"].unique()]
    rows = sorted(data["row"].unique())
    base = alt.Chart(data, title=title, height=alt.Step(30)).encode(
        x=alt.X("class_name:N", title="Class", sort=classes, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("row:N", title=None, sort=rows, axis=alt.Axis(labelLimit=260)),
        tooltip=[alt.Tooltip("site_name:N", title="Site"), alt.Tooltip("model:N", title="Model"),
                 alt.Tooltip("class_name:N", title="Class"),
                 alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
                 alt.Tooltip("correct:Q", title="Correct"),
                 alt.Tooltip("total:Q", title="Test examples"),
                 alt.Tooltip("site_train_count:Q", title="Site's training examples")],
    )
    rects = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("accuracy:Q", title="Accuracy",
                        scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                        legend=alt.Legend(format=".0%", orient="right")))
    text = base.mark_text(fontSize=11).encode(
        text="label:N",
        color=alt.condition(alt.datum.accuracy > 0.6, alt.value("black"), alt.value("white")))
    return alt.LayerChart(layer=[rects, text]).properties(title=title)
