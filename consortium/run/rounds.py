"""Turn what the server judged in a round into the run store's records."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from consortium.run.attribution import FitJudgement
from consortium.store.records import ROUND_FAILED, ROUND_OK, RoundRecord, SiteRoundRecord


@dataclass(frozen=True)
class EvalFigure:
    """One site's (attributed) evaluation of the global model."""

    site: str
    loss: float
    accuracy: float
    num_examples: int
    #: the share of the site's test split in its most frequent class, as the site reported it
    majority_rate: float = float("nan")


def metric(metrics: Mapping[str, object], key: str) -> float:
    """A site's reported figure ``key`` as a float (NaN when absent or not a number)."""
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else float("nan")


def utc_now() -> str:
    """The current time as an ISO-8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _mean(values: list[float], weights: list[int] | None = None) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights or [1] * len(values), strict=True)
             if math.isfinite(v)]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def site_records(judgement: FitJudgement, evals: list[EvalFigure]) -> tuple[SiteRoundRecord, ...]:
    """One record per site that trained, refused or evaluated, sorted by site id; the privacy
    figures are those of the site's verified receipt (also one it re-sent for a round it had
    trained before an interruption: it spent that budget, though its update is not in the sum)."""
    trained = {t.site: t for t in judgement.trained}
    receipts = {t.site: t for t in [*judgement.resent, *judgement.trained]}
    evaluated = {e.site: e for e in evals}
    out = []
    for site in sorted(set(receipts) | set(judgement.refusals) | set(evaluated)):
        t, e = receipts.get(site), evaluated.get(site)
        r = t.signed.receipt if t else None
        out.append(SiteRoundRecord(
            site=site,
            accuracy=e.accuracy if e else None, loss=e.loss if e else None,
            num_examples=e.num_examples if e else None,
            num_train_examples=t.num_examples if t else None,
            epsilon=r.epsilon if r else None, delta=r.delta if r else None,
            noise_multiplier=r.noise_multiplier if r else None,
            sample_rate=r.sample_rate if r else None, steps=r.steps if r else None,
            max_grad_norm=r.max_grad_norm if r else None,
            accountant=r.accountant if r else None,
            trained=site in trained, refusal=judgement.refusals.get(site),
            majority_rate=e.majority_rate if e else None,
        ))
    return tuple(out)


def make_round(rnd: int, *, judgement: FitJudgement, evals: list[EvalFigure], started_at: str,
               duration_s: float, policy_sha256: str, failure: str | None) -> RoundRecord:
    """A round record: completed (with evaluation means) when ``failure`` is None."""
    accs = [e.accuracy for e in evals]
    losses = [e.loss for e in evals]
    counts = [e.num_examples for e in evals]
    return RoundRecord(
        round=rnd, status=ROUND_OK if failure is None else ROUND_FAILED, started_at=started_at,
        finished_at=utc_now(), duration_s=duration_s,
        accuracy_mean=_mean(accs), accuracy_weighted=_mean(accs, counts),
        loss_mean=_mean(losses), loss_weighted=_mean(losses, counts),
        failure_reason=failure, policy_sha256=policy_sha256,
        sites=site_records(judgement, evals),
    )


def checkpoint_bytes(weights: list[np.ndarray]) -> tuple[bytes, str]:
    """The global model as ``.npz`` bytes (arrays ``arr_0``, ``arr_1``, ...) and its SHA-256."""
    buf = io.BytesIO()
    np.savez(buf, *weights)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def aggregate_problem(weights: list[np.ndarray] | None, clipping_range: float) -> str | None:
    """Why an unmasked aggregate cannot be the new global model (None if it can)."""
    if weights is None:
        return "no aggregate was produced"
    if not all(bool(np.isfinite(w).all()) for w in weights):
        return "the aggregate is not finite (NaN or infinity)"
    peak = max((float(np.abs(w).max()) for w in weights if w.size), default=0.0)
    if peak > clipping_range * (1 + 1e-6):
        return (f"the aggregate is out of range: |w| reaches {peak:.4g} > the clipping range "
                f"{clipping_range:g} (corrupted masked arithmetic?)")
    return None
