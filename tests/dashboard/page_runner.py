"""Helpers for driving the dashboard with Streamlit's AppTest."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from conftest import APP
from streamlit.testing.v1 import AppTest

PAGES = {
    "overview": None,
    "privacy": "views/privacy.py",
    "participation": "views/participation.py",
    "audit": "views/audit.py",
}


def run_page(store: Path, page: str = "overview") -> AppTest:
    """Run the app against ``store`` (via ``HC_STORE``) and open ``page``."""
    os.environ["HC_STORE"] = str(store)
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    target = PAGES[page]
    if target is not None:
        at.switch_page(target).run()
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
