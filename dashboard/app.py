"""Entry point of the dashboard: ``streamlit run dashboard/app.py -- --store PATH``.

A router in the manner of Streamlit's hello app: ``st.navigation`` over one page per module of
:mod:`dashboard.views`, with the run selector in the sidebar shared by all pages.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `streamlit run` puts only this file's folder on the path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from dashboard import ui  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"

PAGES = (
    ("overview.py", "Overview", ":material/monitoring:"),
    ("privacy.py", "Privacy budget", ":material/shield_lock:"),
    ("participation.py", "Participation & SecAgg+", ":material/hub:"),
    ("comparison.py", "Comparison", ":material/compare:"),
    ("audit.py", "Audit", ":material/fact_check:"),
)


def main() -> None:
    """Configure the app, draw the sidebar and run the selected page."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    st.set_page_config(page_title="Hospital consortium", page_icon=":material/local_hospital:",
                       layout="wide")
    pages = [
        st.Page(VIEWS / file, title=title, icon=icon, default=(i == 0))
        for i, (file, title, icon) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    ui.start_script_run()
    st.sidebar.markdown("### Hospital consortium")
    ui.run_selector()
    page.run()


if __name__ == "__main__":
    main()
