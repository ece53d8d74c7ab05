"""Before any site trains: would enough member sites admit the run?

A refusal that can be predicted must stop the run before anyone spends. Before round 1 (and
before the next round of a resumed run) the server sends every connected node a Flower ``query``
message carrying the instruction of that round; each site runs the admission checks of a round
without training, spending or writing anything (:mod:`site_node.preflight`) and answers admit,
or refuse with its reason and whether the refusal is final for the run. Answers are attributed
like training replies (:mod:`consortium.run.preflight_query`). If fewer than
``min_sites`` member sites would admit, the run stops (status ``stopped``) naming each refusing
or silent site and why: nothing was trained or spent anywhere.

During the run an admission refusal is final (:mod:`site_node.privacy.admission`):
:func:`shortfall` says when the members that have not finally refused are fewer than
``min_sites``, so the workflow stops instead of asking the others to train further rounds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from consortium.run.attribution import Rejection
from site_node.protocol import masking

STOP_PREFLIGHT = "preflight"


@dataclass(frozen=True)
class Answer:
    """One member site's preflight answer."""

    site: str
    admits: bool
    reason: str | None = None
    final: bool = False
    #: The SecAgg+ mask version the site says it masks with (None: it states none).
    mask_version: int | None = masking.MASK_VERSION


@dataclass(frozen=True)
class PreflightResult:
    """What the preflight found, and why the run must stop (None: it may go on)."""

    round: int
    admitting: tuple[str, ...]
    refusals: Mapping[str, str]
    final: frozenset[str]
    silent: tuple[str, ...]
    rejections: tuple[Rejection, ...] = field(default=())
    stop_reason: str | None = None


def _masks_checked(answer: Answer) -> Answer:
    """``answer``, turned into a refusal naming the versions if the site masks with another
    SecAgg+ mask version than this server unmasks with."""
    other = masking.mismatch(answer.mask_version)
    if other is None:
        return answer
    return Answer(site=answer.site, admits=False, mask_version=answer.mask_version,
                  reason=(f"site {answer.site} masks with {other}, the consortium unmasks with "
                          f"SecAgg+ mask version {masking.MASK_VERSION} (their masks would not "
                          "cancel; run the same release's masking at every site and at the "
                          "consortium)"))


def decide(*, rnd: int, members: Sequence[str], min_sites: int, answers: Sequence[Answer],
           rejections: Sequence[Rejection] = ()) -> PreflightResult:
    """The preflight's decision: stop when fewer than ``min_sites`` members would admit.

    A member that did not answer (or whose answer was rejected) has not said it would admit:
    it counts against the run (fail closed). A member that masks with another SecAgg+ mask
    version than the server's stops the run whatever the others say: its masks would not
    cancel in anyone's sum.
    """
    by_site = {a.site: _masks_checked(a) for a in answers if a.site in members}
    admitting = tuple(s for s in members if s in by_site and by_site[s].admits)
    refusals = {s: by_site[s].reason or "no reason given" for s in members
                if s in by_site and not by_site[s].admits}
    final = frozenset(s for s in refusals if by_site[s].final)
    silent = tuple(s for s in members if s not in by_site)
    stop = None
    masks = [s for s in members if s in by_site and masking.mismatch(by_site[s].mask_version)]
    if masks:
        stop = (f"{STOP_PREFLIGHT}: {', '.join(masks)} cannot take part in secure aggregation "
                f"with this consortium; no site trained or spent anything"
                + "".join(f"; {s}: {refusals[s]}" for s in masks))
    elif len(admitting) < min_sites:
        why = "".join(f"; {s} refused: {r}" for s, r in refusals.items())
        why += "".join(f"; {s} did not answer" for s in silent)
        stop = (f"{STOP_PREFLIGHT}: only {len(admitting)} of {len(members)} member site(s) "
                f"would admit round {rnd} onwards, the policy requires min_sites={min_sites}; "
                f"no site trained or spent anything{why}")
    return PreflightResult(round=rnd, admitting=admitting, refusals=refusals, final=final,
                           silent=silent, rejections=tuple(rejections), stop_reason=stop)


def shortfall(*, members: Collection[str], finally_refused: Mapping[str, str],
              min_sites: int) -> str | None:
    """Why the run cannot go on (None if it can): the members that have not finally refused
    the run (``finally_refused``: site -> reason) are fewer than ``min_sites``."""
    able = [s for s in members if s not in finally_refused]
    if len(able) >= min_sites:
        return None
    gone = sorted(s for s in finally_refused if s in members)
    why = "".join(f"; {s} refused: {finally_refused[s]}" for s in gone)
    return (f"only {len(able)} member site(s) can still train, the policy requires "
            f"min_sites={min_sites}; {', '.join(gone)} refused the run for good{why}")
