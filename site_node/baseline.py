"""The majority-class baseline: the accuracy of always predicting a split's most frequent class.

A site sends it beside its test accuracy (:data:`site_node.protocol.wire.MAJORITY_RATE`), so that
a model that learned nothing (one that predicts one class for everything) is flagged where its
accuracy is shown, never silently reported as a result.
"""

from __future__ import annotations

import numpy as np


def majority_rate(y: np.ndarray) -> float:
    """Share of ``y`` in its most frequent class (NaN for an empty split)."""
    if len(y) == 0:
        return float("nan")
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    return float(counts.max() / len(y))
