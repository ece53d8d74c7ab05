"""Turn what the strategy collected in a round into the run store's records."""

from __future__ import annotations

import hashlib
import io
import math
from datetime import UTC, datetime

import numpy as np

from consortium import wire
from consortium.records import ROUND_FAILED, ROUND_OK, RoundRecord, SiteRoundRecord
from consortium.strategy import SiteEval, SiteFit


def utc_now() -> str:
    """The current time as an ISO-8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _mean(values: list[float], weights: list[int] | None = None) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights or [1] * len(values), strict=True)
             if not math.isnan(v)]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def site_records(fits: list[SiteFit], evals: list[SiteEval]) -> tuple[SiteRoundRecord, ...]:
    """One record per site that trained or evaluated, sorted by site id."""
    fit_by = {f.site: f for f in fits}
    eval_by = {e.site: e for e in evals}
    out = []
    for site in sorted(set(fit_by) | set(eval_by)):
        f, e = fit_by.get(site), eval_by.get(site)
        m = f.metrics if f else {}
        out.append(SiteRoundRecord(
            site=site,
            accuracy=e.accuracy if e else None,
            loss=e.loss if e else None,
            num_examples=e.num_examples if e else None,
            num_train_examples=int(m[wire.NUM_TRAIN_EXAMPLES]) if f else None,
            epsilon=float(m[wire.EPSILON]) if f else None,
            noise_multiplier=float(m[wire.NOISE_MULTIPLIER]) if f else None,
            sample_rate=float(m[wire.SAMPLE_RATE]) if f else None,
            steps=int(m[wire.STEPS]) if f else None,
            max_grad_norm=float(m[wire.MAX_GRAD_NORM]) if f else None,
            accountant=str(m[wire.ACCOUNTANT]) if f else None,
            trained=f is not None,
        ))
    return tuple(out)


def ok_round(
    rnd: int, *, fits: list[SiteFit], evals: list[SiteEval], started_at: str, started: float,
    finished: float, policy_sha256: str,
) -> RoundRecord:
    """A completed round with its evaluation means (unweighted and example-weighted)."""
    accs = [e.accuracy for e in evals]
    losses = [e.loss for e in evals]
    counts = [e.num_examples for e in evals]
    return RoundRecord(
        round=rnd, status=ROUND_OK, started_at=started_at, finished_at=utc_now(),
        duration_s=finished - started,
        accuracy_mean=_mean(accs), accuracy_weighted=_mean(accs, counts),
        loss_mean=_mean(losses), loss_weighted=_mean(losses, counts),
        policy_sha256=policy_sha256, sites=site_records(fits, evals),
    )


def failed_round(
    rnd: int, *, reason: str, started_at: str, started: float, finished: float,
    policy_sha256: str,
) -> RoundRecord:
    """A round that produced no new global model."""
    return RoundRecord(
        round=rnd, status=ROUND_FAILED, started_at=started_at, finished_at=utc_now(),
        duration_s=finished - started, failure_reason=reason, policy_sha256=policy_sha256,
    )


def checkpoint_bytes(weights: list[np.ndarray]) -> tuple[bytes, str]:
    """The global model as ``.npz`` bytes (arrays ``arr_0``, ``arr_1``, ...) and its SHA-256."""
    buf = io.BytesIO()
    np.savez(buf, *weights)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()
