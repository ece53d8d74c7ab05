"""Never silent about a useless model: each site's accuracy beside its majority-class rate.

A model that predicts one class for everything scores a site's majority-class rate (the share
of its test split in its most frequent class) and has learned nothing. The CLI summary, the
export and the dashboard all show the check of a run's last completed round from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consortium.store.records import ROUND_OK, RoundRecord


@dataclass(frozen=True)
class SiteCheck:
    """One site's accuracy beside its majority-class rate (None where it did not evaluate)."""

    site: str
    accuracy: float | None
    majority_rate: float | None
    beats_majority: bool | None


@dataclass(frozen=True)
class MajorityCheck:
    """The check of one round: every evaluating site's :class:`SiteCheck`."""

    round: int | None
    sites: tuple[SiteCheck, ...] = ()

    @property
    def flagged(self) -> tuple[str, ...]:
        """The sites where the model does not beat the majority-class rate."""
        return tuple(s.site for s in self.sites if s.beats_majority is False)

    @property
    def useless(self) -> bool:
        """Whether the model beats the majority-class rate at no site that reported one."""
        known = [s for s in self.sites if s.beats_majority is not None]
        return bool(known) and not any(s.beats_majority for s in known)

    def summary(self) -> str:
        """One line: which sites the model fails to beat the majority class at, if any."""
        if self.round is None:
            return "no completed round: no model to judge"
        if not any(s.beats_majority is not None for s in self.sites):
            return f"round {self.round}: no site reported its majority-class rate"
        if self.useless:
            return (f"WARNING round {self.round}: the model does not beat the majority-class "
                    "rate at any site: it learned nothing")
        if self.flagged:
            return (f"WARNING round {self.round}: the model does not beat the majority-class "
                    f"rate at {', '.join(self.flagged)}")
        return f"round {self.round}: the model beats the majority-class rate at every site"

    def to_json(self) -> dict[str, object]:
        """The check as the export writes it."""
        return {"round": self.round, "flagged": list(self.flagged), "useless": self.useless,
                "sites": {s.site: {"accuracy": s.accuracy, "majority_rate": s.majority_rate,
                                   "beats_majority": s.beats_majority} for s in self.sites}}


def final_check(rounds: Sequence[RoundRecord]) -> MajorityCheck:
    """The check of the last completed round (``round`` None when none completed)."""
    done = [r for r in rounds if r.status == ROUND_OK]
    if not done:
        return MajorityCheck(round=None)
    last = done[-1]
    return MajorityCheck(round=last.round, sites=tuple(
        SiteCheck(s.site, s.accuracy, s.majority_rate, s.beats_majority)
        for s in last.sites if s.accuracy is not None))
