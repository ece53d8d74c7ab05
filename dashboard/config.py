"""Where the run store is, and how sites are named and coloured.

Nothing here imports Streamlit, so the settings can be tested and reused without it.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Where the run store is when none is given: the consortium home's (see consortium.home).
STORE_HINT = "runs.sqlite in $HOSPITAL_CONSORTIUM_HOME (default ~/.hospital-consortium)"

#: Display names of the sites of the embedded default consortium.
SITE_NAMES: dict[str, str] = {
    "cleveland": "Cleveland",
    "hungary": "Hungary (Budapest)",
    "long_beach": "VA Long Beach",
    "switzerland": "Switzerland (Zurich/Basel)",
}

#: Fixed colours of the known sites (Tableau 10, distinguishable for most colour vision).
SITE_COLOURS: dict[str, str] = {
    "cleveland": "#4e79a7",
    "hungary": "#f28e2b",
    "long_beach": "#59a14f",
    "switzerland": "#e15759",
}

#: Colours for any other site, chosen by a stable hash of the site id.
_EXTRA_COLOURS: tuple[str, ...] = (
    "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#17becf", "#bcbd22", "#8c564b", "#7f7f7f",
)


def store_path(argv: Sequence[str] | None = None) -> Path:
    """The run store the dashboard reads.

    Parameters
    ----------
    argv : sequence of str, optional
        Script arguments (``streamlit run app.py -- --store PATH`` gives ``["--store", PATH]``);
        unknown arguments are ignored. Defaults to ``sys.argv[1:]``.

    Returns
    -------
    Path
        ``--store`` if given, else the consortium home's run store
        (:func:`consortium.home.default_store_path`); user-expanded.
    """
    import sys

    from consortium.home import default_store_path

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store", default=None)
    known, _ = parser.parse_known_args(args)
    if known.store:
        return Path(known.store).expanduser()
    return default_store_path()


def site_name(site: str) -> str:
    """Display name of a site id (the id itself for a site this dashboard does not know)."""
    return SITE_NAMES.get(site, site)


def site_colour(site: str) -> str:
    """The colour a site has on every chart, stable across pages, runs and sessions."""
    if site in SITE_COLOURS:
        return SITE_COLOURS[site]
    digest = hashlib.sha256(site.encode()).digest()
    return _EXTRA_COLOURS[digest[0] % len(_EXTRA_COLOURS)]


def ordered_sites(sites: Iterable[str]) -> list[str]:
    """Site ids in display order: known sites first in their usual order, then others sorted."""
    unique = set(sites)
    known = [s for s in SITE_NAMES if s in unique]
    return known + sorted(unique - set(SITE_NAMES))
