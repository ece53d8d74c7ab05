"""Turn run-store records into pandas DataFrames, and derive the figures the pages show.

Pure functions over :mod:`consortium.records` values: no Streamlit, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import fields
from typing import get_args, get_type_hints

import pandas as pd

from consortium.store.records import (
    MODEL_LOCAL,
    ROUND_FAILED,
    ComparisonRecord,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)
from consortium.store.schema import ROUNDS, SITE_ROUNDS
from dashboard.config import ordered_sites, site_name

#: Participation states of a site in a round, in legend order.
TOOK_PART = "took part"
EVALUATED_ONLY = "did not train"
DROPPED_OUT = "dropped out"
ROUND_FAILED_LABEL = "round failed"
PARTICIPATION_STATES = (TOOK_PART, EVALUATED_ONLY, DROPPED_OUT, ROUND_FAILED_LABEL)

#: Display columns derived from the records: how many sites trained in a round, a site's name.
SITES_TRAINED = "sites_trained"
SITE_NAME = "site_name"

_ROUND_FIELDS = ROUNDS.fields
_ROUND_COLUMNS = [*_ROUND_FIELDS, SITES_TRAINED]
_SITE_FIELDS = SITE_ROUNDS.fields
_SITE_COLUMNS = ["round", "site", SITE_NAME, *(f for f in _SITE_FIELDS if f != "site")]
#: The float fields of a site's figures (``float64`` columns, ``NaN`` where ``None``).
_SITE_FLOATS = [f.name for f in fields(SiteRoundRecord)
                if float in get_args(get_type_hints(SiteRoundRecord)[f.name])]


def runs_frame(runs: Sequence[RunRecord], rounds: dict[str, list[RoundRecord]]) -> pd.DataFrame:
    """One row per run, newest first, for the runs table.

    Parameters
    ----------
    runs : sequence of RunRecord
        The runs, as :meth:`RunStore.list_runs` gives them.
    rounds : dict
        Each run's recorded rounds, by run id.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, status, rounds_done, rounds_failed, rounds_planned, sites, started_at,
        finished_at, stop_reason, engine``.
    """
    rows = []
    for run in runs:
        recorded = rounds.get(run.run_id, [])
        rows.append({
            "run_id": run.run_id,
            "status": run.status,
            "rounds_done": sum(r.status != ROUND_FAILED for r in recorded),
            "rounds_failed": sum(r.status == ROUND_FAILED for r in recorded),
            "rounds_planned": run.rounds_planned,
            "sites": ", ".join(site_name(s) for s in ordered_sites(run.sites)),
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "stop_reason": run.stop_reason,
            "engine": run.engine,
        })
    return pd.DataFrame(rows, columns=[
        "run_id", "status", "rounds_done", "rounds_failed", "rounds_planned", "sites",
        "started_at", "finished_at", "stop_reason", "engine",
    ])


def rounds_frame(rounds: Sequence[RoundRecord]) -> pd.DataFrame:
    """One row per recorded round, with how many sites trained in it."""
    rows = [
        {
            **{c: getattr(r, c) for c in _ROUND_FIELDS},
            SITES_TRAINED: sum(s.trained for s in r.sites),
        }
        for r in rounds
    ]
    frame = pd.DataFrame(rows, columns=_ROUND_COLUMNS)
    return frame.astype({"round": "int64", "duration_s": "float64"})


def sites_frame(rounds: Sequence[RoundRecord]) -> pd.DataFrame:
    """One row per (round, site) figure the store holds."""
    rows = [
        {
            "round": r.round,
            SITE_NAME: site_name(s.site),
            **{c: getattr(s, c) for c in _SITE_FIELDS},
        }
        for r in rounds
        for s in r.sites
    ]
    frame = pd.DataFrame(rows, columns=_SITE_COLUMNS)
    return frame.astype({c: "float64" for c in _SITE_FLOATS} | {"round": "int64", "trained": bool})


def run_sites(run: RunRecord, sites: pd.DataFrame) -> list[str]:
    """The run's expected sites plus any other site that reported, in display order."""
    return ordered_sites([*run.sites, *sites["site"].tolist()])


def participation_frame(
    run: RunRecord, rounds: pd.DataFrame, sites: pd.DataFrame
) -> pd.DataFrame:
    """Who took part in each round: one row per (round, site).

    A site took part if it has a row with ``trained`` true; a site of the run with no row is a
    dropout; every site of a failed round is marked ``round failed``.
    """
    by_key = {(int(r.round), str(r.site)): bool(r.trained) for r in sites.itertuples()}
    rows = []
    for rnd in rounds.itertuples():
        for site in run_sites(run, sites):
            trained = by_key.get((int(rnd.round), site))
            if rnd.status == ROUND_FAILED:
                state = ROUND_FAILED_LABEL
            elif trained is None:
                state = DROPPED_OUT
            else:
                state = TOOK_PART if trained else EVALUATED_ONLY
            rows.append({
                "round": int(rnd.round), "site": site, "site_name": site_name(site),
                "participation": state,
                "failure_reason": rnd.failure_reason if rnd.status == ROUND_FAILED else None,
            })
    return pd.DataFrame(
        rows, columns=["round", "site", "site_name", "participation", "failure_reason"]
    )


def budget_frame(run: RunRecord, sites: pd.DataFrame) -> pd.DataFrame:
    """Each site's spent and remaining ε, and a linear forecast of the rounds it can afford.

    The rate is the ε the site's most recent round added (its first round's ε if it has only
    one). Under composition ε grows sublinearly in the rounds, so later rounds cost less than
    that rate and the forecast is conservative (it under-estimates the affordable rounds).

    Returns
    -------
    pandas.DataFrame
        Columns ``site, site_name, epsilon, ceiling, remaining, used_pct, rate,
        rounds_affordable, last_round``; ``rounds_affordable`` is ``None`` when no rate is
        known or the rate is zero.
    """
    rows = []
    eps = sites.dropna(subset=["epsilon"]).sort_values("round")
    for site in run_sites(run, sites):
        own = eps[eps["site"] == site]
        spent = float(own["epsilon"].iloc[-1]) if len(own) else 0.0
        rate: float | None = None
        if len(own) >= 2:
            last, prev = own.iloc[-1], own.iloc[-2]
            rate = max(float(last["epsilon"]) - float(prev["epsilon"]), 0.0)
        elif len(own) == 1:
            rate = spent
        remaining = max(run.epsilon_ceiling - spent, 0.0)
        affordable = math.floor(remaining / rate) if rate else None
        rows.append({
            "site": site, "site_name": site_name(site), "epsilon": spent,
            "ceiling": run.epsilon_ceiling, "remaining": remaining,
            "used_pct": 100.0 * spent / run.epsilon_ceiling if run.epsilon_ceiling else None,
            "rate": rate, "rounds_affordable": affordable,
            "last_round": int(own["round"].iloc[-1]) if len(own) else None,
        })
    return pd.DataFrame(rows, columns=[
        "site", "site_name", "epsilon", "ceiling", "remaining", "used_pct", "rate",
        "rounds_affordable", "last_round",
    ])


def parse_json(text: str | None) -> tuple[dict[str, object], str | None]:
    """Parse a JSON object column; returns the object (empty on failure) and an error or None."""
    if not text:
        return {}, "empty"
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        return {}, f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {"value": value}, None
    return value, None


def params_frame(params: dict[str, object]) -> pd.DataFrame:
    """A two-column (parameter, value) table of a flat or nested parameter dict."""
    rows = [
        {"parameter": k, "value": json.dumps(v) if isinstance(v, dict | list) else str(v)}
        for k, v in params.items()
    ]
    return pd.DataFrame(rows, columns=["parameter", "value"])


def lifetime_frame(receipts: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Each site's lifetime ε and ceiling from its latest signed receipt in the run.

    The receipts carry what the site's own ledger composed over every run it ever joined; the
    dashboard only reads them (a site's ledger never leaves the site). Empty when the store
    holds no receipts for the run.
    """
    columns = ["site", "site_name", "round", "lifetime_epsilon", "lifetime_ceiling",
               "remaining", "used_pct", "delta"]
    if receipts.empty or "receipt_json" not in receipts.columns:
        return pd.DataFrame(columns=columns)
    rows = receipts[receipts["run_id"] == run_id] if "run_id" in receipts.columns else receipts
    latest: dict[str, dict[str, object]] = {}
    for text in rows["receipt_json"]:
        rec = json.loads(text)
        site = str(rec["site"])
        if site not in latest or int(rec["round"]) > int(str(latest[site]["round"])):
            latest[site] = rec
    out = []
    for site in ordered_sites(latest):
        rec = latest[site]
        eps = float(str(rec["lifetime_epsilon"]))
        ceiling = float(str(rec["lifetime_epsilon_ceiling"]))
        out.append({"site": site, "site_name": site_name(site), "round": int(str(rec["round"])),
                    "lifetime_epsilon": eps, "lifetime_ceiling": ceiling,
                    "remaining": max(ceiling - eps, 0.0),
                    "used_pct": 100.0 * eps / ceiling if ceiling else math.nan,
                    "delta": float(str(rec["delta"]))})
    return pd.DataFrame(out, columns=columns)


COMPARISON_COLUMNS = [
    "comparison_id", "created_at", "federated_run_id", "local_run_id", "site", "site_name",
    "scope", "model", "row", "class_index", "class_name", "correct", "total", "accuracy",
    "site_train_count", "label",
]


def comparison_frame(comparisons: Sequence[ComparisonRecord]) -> pd.DataFrame:
    """One row per comparison cell: a site's local or the federated model on one class of its
    own or the union's test set. ``row`` names the heat map row (site and model); ``label`` is
    the accuracy as text, marked ``*`` for a local model on a class its site never trained on.
    """
    rows = []
    for c in comparisons:
        for x in c.cells:
            acc = x.correct / x.total if x.total else None
            unseen = x.model == MODEL_LOCAL and x.site_train_count == 0
            rows.append({
                "comparison_id": c.comparison_id, "created_at": c.created_at,
                "federated_run_id": c.federated_run_id,
                "local_run_id": c.local_runs.get(x.site), "site": x.site,
                "site_name": site_name(x.site), "scope": x.scope, "model": x.model,
                "row": f"{site_name(x.site)} · {x.model}", "class_index": x.class_index,
                "class_name": x.class_name, "correct": x.correct, "total": x.total,
                "accuracy": acc, "site_train_count": x.site_train_count,
                "label": "–" if acc is None else f"{acc:.0%}{'*' if unseen else ''}",
            })
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return frame.astype({"accuracy": "float64"})
