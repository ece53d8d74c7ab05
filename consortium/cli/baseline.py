"""The CLI's view of :mod:`consortium.store.baseline`: each site's accuracy beside its
majority-class rate, and a warning line for a model that does not beat it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from consortium.store.baseline import MajorityCheck, final_check
from consortium.store.records import RoundRecord


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def check_table(check: MajorityCheck, title: str) -> Table:
    """Per site: accuracy, majority-class rate and whether the model beats it."""
    table = Table(title=title)
    for name in ("site", "accuracy", "majority class", "beats it?"):
        table.add_column(name, justify="left" if name == "site" else "right")
    for s in check.sites:
        verdict = {True: "yes", False: "[bold red]NO[/]", None: "—"}[s.beats_majority]
        table.add_row(s.site, _fmt(s.accuracy), _fmt(s.majority_rate), verdict)
    return table


def print_check(console: Console, rounds: Sequence[RoundRecord], what: str = "the model") -> None:
    """Print the check of the last completed round: the table and its one-line verdict."""
    check = final_check(rounds)
    if check.round is not None and check.sites:
        console.print(check_table(check, f"{what}, round {check.round}: accuracy vs the "
                                         "majority-class rate"))
    line = check.summary()
    style = "bold red" if line.startswith("WARNING") else ""
    console.print(f"[{style}]{line}[/]" if style else line, highlight=False)
