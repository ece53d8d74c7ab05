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

#: The page (favicon) icon, inline. Streamlit turns an SVG string into a ``data:`` URL, so the
#: browser fetches nothing for it; a ``:material/...:`` page icon made every page load fetch the
#: icon from fonts.gstatic.com. (Icons elsewhere use the Material font Streamlit serves itself.)
PAGE_ICON_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
                 '<rect x="2" y="2" width="20" height="20" rx="4" fill="#4e79a7"/>'
                 '<path d="M10 5h4v5h5v4h-5v5h-4v-5H5v-4h5z" fill="#ffffff"/></svg>')

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
    st.set_page_config(page_title="Hospital consortium", page_icon=PAGE_ICON_SVG,
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
