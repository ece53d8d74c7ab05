"""A round's figures as its signed round entry records them, and as the verifier compares them.

The run store's ``rounds``, ``site_rounds`` and ``checkpoints`` rows are what the export and the
dashboard show; the round entry the consortium signs in the same transaction carries the same
figures (:func:`round_figures`), so that :mod:`consortium.audit.coverage` can compare every row
with what was signed. Numbers are stored as SQLite keeps them: NaN as ``None`` (SQLite stores
NaN as NULL), infinities as the strings ``"inf"`` and ``"-inf"`` (canonical JSON has no
infinities).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from enum import Enum
from typing import Any

from consortium.store.records import RoundRecord

#: Wire keys of a round entry's figures.
RECORD, SITES, CHECKPOINT_SHA256 = "record", "sites", "checkpoint_sha256"


def value(x: object) -> object:
    """A stored value as signed: NaN as None, infinities as strings, an enum member (a status)
    as its value, other values as they are."""
    if isinstance(x, Enum):
        return value(x.value)
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def same(signed: object, stored: object) -> bool:
    """Whether a stored value equals the signed one (numbers compared as numbers)."""
    a, b = value(signed), value(stored)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def round_figures(record: RoundRecord, checkpoint_sha256: str | None) -> dict[str, Any]:
    """The figures of one round as its signed round entry records them."""
    fields = asdict(record)
    sites = fields.pop("sites")
    return {
        RECORD: {k: value(v) for k, v in fields.items()},
        SITES: {s["site"]: {k: value(v) for k, v in s.items() if k != "site"} for s in sites},
        CHECKPOINT_SHA256: checkpoint_sha256,
    }
