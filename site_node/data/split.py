"""The task's fixed train/test split, made by each site of its own examples."""

from __future__ import annotations

import numpy as np


def split_mask(labels: np.ndarray, *, test_fraction: float, seed: int,
               stratified: bool = True) -> np.ndarray:
    """Boolean mask of test examples, fixed by ``seed``.

    Stratified: the same fraction of each class (rounded per class); otherwise that fraction of
    all examples.
    """
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [
        np.arange(len(labels))]
    for idx in groups:
        rng.shuffle(idx)
        is_test[idx[: round(len(idx) * test_fraction)]] = True
    return is_test
