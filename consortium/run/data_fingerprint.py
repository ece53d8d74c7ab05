"""What each site of a local run trained on: a fingerprint of its data, recorded with the run.

A site's privacy ledger bounds what its own records have spent. If one file serves two sites,
or a site's data change between a run's start and its resumption, the ε a ledger states is no
longer the ε of the records trained: one hospital's patients trained under two ledgers have
spent the sum. So the local consortium (``consortium run`` and ``compare``, with ``--data`` or an
example) fingerprints every site's data when a run starts, records the fingerprints with the run
(its row and its signed run-start entry), refuses two sites with the same data (in the run, or
data an earlier run of the store trained as another site's), and refuses to resume a run whose
site's data changed.

The fingerprint is the site's own (:mod:`site_node.data.fingerprint`): the SHA-256 of the
file's bytes, or of an image folder's files framed by their relative paths and sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from consortium.errors import PlanError
from consortium.store.records import RunRecord
from site_node.data.fingerprint import data_fingerprint
from site_node.errors import DataError

#: How many hex digits of a fingerprint a message shows.
SHORT = 12


def fingerprint_path(path: Path) -> str:
    """The site's data fingerprint (:func:`site_node.data.fingerprint.data_fingerprint`: the
    one definition, that the site records in its ledger too).

    Raises
    ------
    PlanError
        If the path does not exist or cannot be read (the message names it).
    """
    try:
        return data_fingerprint(path)
    except DataError as exc:
        raise PlanError(str(exc)) from None


def data_fingerprints(data: Mapping[str, Path]) -> dict[str, str]:
    """Each site's data fingerprint; refuses the same data (bytes) at two sites.

    Raises
    ------
    PlanError
        If a site's data cannot be read, or two sites have the same data (both named, with
        their files).
    """
    prints: dict[str, str] = {}
    seen: dict[str, str] = {}
    for site, path in data.items():
        fp = fingerprint_path(path)
        other = seen.get(fp)
        if other is not None:
            same = (f"the same file {path}" if data[other] == path else
                    f"the same data ({data[other]} and {path} have identical contents)")
            raise PlanError(
                f"sites {other} and {site} are given {same} (sha256 {fp[:SHORT]}…): one "
                "hospital's records would be trained under two sites' privacy ledgers, and "
                "their real ε would be more than either ledger says; give each site its own "
                "data; nothing was trained")
        seen[fp] = site
        prints[site] = fp
    return prints


def check_other_runs(runs: Iterable[RunRecord], prints: Mapping[str, str],
                     data: Mapping[str, Path]) -> None:
    """Refuse data that an earlier run of the store recorded for another site.

    Raises
    ------
    PlanError
        Naming the site, its file, the other site and that run.
    """
    for run in runs:
        for other, fp in (run.data_fingerprints or {}).items():
            for site, mine in prints.items():
                if mine == fp and other != site:
                    raise PlanError(
                        f"the data of site {site} ({data[site]}, sha256 {fp[:SHORT]}…) were "
                        f"trained as site {other}'s in run {run.run_id}: one hospital's records "
                        "would be trained under two sites' privacy ledgers, and their real ε "
                        "would be more than either ledger says; nothing was trained")


def check_unchanged(run_id: str, recorded: Mapping[str, str] | None,
                    current: Mapping[str, str]) -> None:
    """Refuse to resume run ``run_id`` unless every site's data is the data it started with.

    Raises
    ------
    PlanError
        If the run recorded no fingerprints (it cannot be checked), a site has no data, or a
        site's data changed (the site named, with both fingerprints, short).
    """
    if recorded is None:
        raise PlanError(f"run {run_id} recorded no fingerprint of its sites' data (it started "
                        "before they were recorded): whether its sites' data are still the "
                        "data they trained on cannot be checked, so it cannot be resumed")
    for site, fp in recorded.items():
        now = current.get(site)
        if now is None:
            raise PlanError(f"run {run_id}: site {site} has no data to resume with (give the "
                            "data it started with)")
        if now != fp:
            raise PlanError(
                f"run {run_id}: the data of site {site} changed since the run started (sha256 "
                f"{fp[:SHORT]}… then, {now[:SHORT]}… now); a run is resumed only on the data "
                "its sites started with; nothing was trained")
