"""The audit verdict the dashboard shows, and the tables it builds from the signed receipts.

:func:`verify_run` runs :func:`consortium.audit.verify.verify_store` (what ``consortium audit
verify --run RUN`` runs) and keeps its outcome as a plain value; :func:`receipt_mechanism_frame`
reads the DP-SGD mechanism from the sites' signed receipts; :func:`epsilon_cross_check` compares
the unsigned ε figures of the ``site_rounds`` table with them. Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from consortium.errors import AuditVerificationError, SecurityEventsFound
from dashboard.config import ordered_sites, site_name
from site_node.protocol.errors import ReceiptError
from site_node.protocol.receipt import Receipt

#: Relative difference above which an unsigned ε figure disagrees with its signed receipt.
CROSS_CHECK_RTOL = 1e-9


@dataclass(frozen=True)
class Event:
    """One security event the audit log records for the run."""

    seq: int
    reason: str


@dataclass(frozen=True)
class Recomputed:
    """One receipt's ε as recomputed by the verifier's own accountant."""

    site: str
    round: int
    epsilon: float


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one run's audit trail.

    Attributes
    ----------
    verified : bool
        True only when every check of ``verify_store`` held.
    error_kind : str or None
        The exception class that failed the verification (``ChainBroken``, ``EpsilonMismatch``,
        ``SecurityEventsFound``, …).
    reason : str or None
        Its message, exactly as ``consortium audit verify`` prints it.
    security_events : tuple of Event
        Every security event of the run (only when the rest of the trail is intact).
    entries : int
        Audit log entries checked (0 when the verification failed).
    consortium_fingerprint : str
        Fingerprint of the consortium key the log was checked against ("" when unknown).
    recomputed : tuple of Recomputed
        Every receipt's independently recomputed ε (empty when a record was broken).
    """

    verified: bool
    error_kind: str | None = None
    reason: str | None = None
    security_events: tuple[Event, ...] = ()
    entries: int = 0
    consortium_fingerprint: str = ""
    recomputed: tuple[Recomputed, ...] = ()


def verify_run(path: str | Path, *, run_id: str) -> Verdict:
    """Verify the store's whole chain and run ``run_id``'s receipts, ε and security events.

    Raises
    ------
    consortium.errors.StoreError
        If the store cannot be opened or read (the caller says that nothing is verified).
    """
    from consortium.audit.verify import VerificationResult, verify_store

    try:
        result = verify_store(path, run_id=run_id)
    except SecurityEventsFound as exc:
        partial = exc.result if isinstance(exc.result, VerificationResult) else None
        events = tuple(Event(s.seq, s.reason) for s in partial.security_events) if partial \
            else ()
        return Verdict(verified=False, error_kind=type(exc).__name__, reason=str(exc),
                       security_events=events)
    except AuditVerificationError as exc:
        return Verdict(verified=False, error_kind=type(exc).__name__, reason=str(exc))
    return Verdict(verified=True, entries=result.entries,
                   consortium_fingerprint=result.consortium_fingerprint,
                   recomputed=tuple(Recomputed(c.site, c.round, c.independent)
                                    for c in result.checks if c.run_id == run_id))


def store_stamp(path: str | Path) -> tuple[int, ...]:
    """Modification time and size of the store file and its write-ahead log: a new write
    changes it, so a cache keyed on it verifies again exactly when the store changed."""
    base = Path(path).expanduser()
    stamp: list[int] = []
    for file in (base, base.with_name(base.name + "-wal")):
        try:
            st = file.stat()
        except OSError:
            stamp += [-1, -1]
            continue
        stamp += [st.st_mtime_ns, st.st_size]
    return tuple(stamp)


#: The receipt fields the mechanism table shows, in order.
_RECEIPT_FIELDS = ("epsilon", "epsilon_ceiling", "lifetime_epsilon", "lifetime_epsilon_ceiling",
                   "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant",
                   "delta", "num_examples")

MECHANISM_COLUMNS = [
    "round", "site", "site_name", "epsilon", "recomputed_epsilon", "epsilon_ceiling",
    "lifetime_epsilon", "lifetime_epsilon_ceiling", "noise_multiplier", "sample_rate", "steps",
    "max_grad_norm", "accountant", "delta", "num_examples", "key_fingerprint", "problem",
]


def receipt_mechanism_frame(receipts: pd.DataFrame, verdict: Verdict | None) -> pd.DataFrame:
    """One row per signed receipt of the run: the mechanism and ε the site signed.

    ``recomputed_epsilon`` is the verifier's own figure, present only when the trail verified;
    a receipt whose JSON cannot be read keeps its row with the reason in ``problem``.
    """
    again = {(r.site, r.round): r.epsilon for r in (verdict.recomputed if verdict else ())}
    rows = []
    for row in receipts.itertuples():
        base = {"round": int(row.round), "site": str(row.site),
                "site_name": site_name(str(row.site)), "key_fingerprint": row.key_fingerprint}
        try:
            r = Receipt.from_canonical(str(row.receipt_json))
        except (ReceiptError, ValueError, TypeError) as exc:
            rows.append({**base, "problem": f"unreadable receipt: {exc}"})
            continue
        rows.append({**base, **{c: getattr(r, c) for c in _RECEIPT_FIELDS},
                     "recomputed_epsilon": again.get((r.site, r.round)), "problem": None})
    frame = pd.DataFrame(rows, columns=MECHANISM_COLUMNS)
    order = {s: i for i, s in enumerate(ordered_sites(frame["site"]))}
    frame = frame.assign(_o=frame["site"].map(order)).sort_values(["round", "_o"])
    return frame.drop(columns="_o").reset_index(drop=True)


@dataclass(frozen=True)
class CrossCheck:
    """The unsigned ε figures of a run compared with its signed receipts.

    Attributes
    ----------
    signed : int
        Figures that equal their signed receipt's ε.
    mismatches : tuple of str
        Figures that differ from their signed receipt's ε, each described.
    unsigned : tuple of str
        Figures no signed receipt backs, each described.
    """

    signed: int
    mismatches: tuple[str, ...]
    unsigned: tuple[str, ...]


def epsilon_cross_check(sites: pd.DataFrame, receipts: pd.DataFrame) -> CrossCheck:
    """Compare every ε of ``sites`` (:func:`dashboard.frames.sites_frame`) with the ε of the
    signed receipt of the same site and round (receipts that cannot be read back none)."""
    claims: dict[tuple[str, int], float] = {}
    for row in receipts.itertuples():
        try:
            r = Receipt.from_canonical(str(row.receipt_json))
        except (ReceiptError, ValueError, TypeError):
            continue
        claims[(r.site, r.round)] = r.epsilon
    signed, mismatches, unsigned = 0, [], []
    for row in sites.dropna(subset=["epsilon"]).sort_values(["round", "site"]).itertuples():
        key, shown = (str(row.site), int(row.round)), float(row.epsilon)
        where = f"round {key[1]}, {site_name(key[0])}"
        if key not in claims:
            unsigned.append(f"{where}: ε = {shown:.6g}")
        elif math.isclose(shown, claims[key], rel_tol=CROSS_CHECK_RTOL):
            signed += 1
        else:
            mismatches.append(f"{where}: the rounds table says ε = {shown:.6g}, the signed "
                              f"receipt says ε = {claims[key]:.6g}")
    return CrossCheck(signed, tuple(mismatches), tuple(unsigned))
