"""Helpers for driving the dashboard with Streamlit's AppTest."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from dashboard import ui

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "overview": None,
    "privacy": "views/privacy.py",
    "participation": "views/participation.py",
    "audit": "views/audit.py",
    "comparison": "views/comparison.py",
}


def run_page(store: Path, page: str = "overview", run_id: str | None = None) -> AppTest:
    """Run the app against ``store`` (the session's store, as ``--store`` sets it), open
    ``page`` and, if given, select ``run_id`` in the sidebar."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state[ui.STORE_KEY] = str(store)
    at.run()
    target = PAGES[page]
    if target is not None:
        at.switch_page(target).run()
    if run_id is not None:
        at.selectbox(key=ui.RUN_KEY).select(run_id).run()
    return at


def charts(at: AppTest) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Every Vega-Lite chart on the page: its spec and its first dataset as a DataFrame."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        datasets = el.proto.datasets
        frame = (
            pa.ipc.open_stream(io.BytesIO(datasets[0].data.data)).read_all().to_pandas()
            if datasets else pd.DataFrame()
        )
        out.append((spec, frame))
    return out


def chart_titled(at: AppTest, title: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The chart whose title is ``title``."""
    found = [(s, d) for s, d in charts(at) if _title(s) == title]
    assert found, f"no chart titled {title!r}; have {[_title(s) for s, _ in charts(at)]}"
    return found[0]


def _title(spec: dict[str, Any]) -> str | None:
    title = spec.get("title")
    return title.get("text") if isinstance(title, dict) else title


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and metric labels of the page, joined."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "error", "warning", "info",
                 "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def metrics(at: AppTest) -> dict[str, str]:
    """Every metric on the page, label to value."""
    return {m.label: str(m.value) for m in at.metric}
