"""Mask version 2's masked vector: masks cancel in the sum, uploads look uniform, dropped sites'
masks are removed, rounding is unbiased, and masking needs no full-size copy per neighbour."""

from __future__ import annotations

import itertools
import os
import tracemalloc

import numpy as np
import pytest

from site_node.protocol import masked_vector as mv

Q = mv.Quantisation(clipping_range=8.0, target_range=2**22, mod_range=2**32)
STEP = 2 * Q.clipping_range / Q.target_range  # 2**-18: one quantisation level
SHAPES: list[tuple[int, ...]] = [(300, 7), (5,), (mv.CHUNK + 17,)]  # one array spans chunks


def on_grid(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values that quantise exactly (weight 1: no stochastic rounding happens)."""
    return (rng.integers(-2**18, 2**18, size=shape) * STEP).astype(np.float32)


def secrets(k: int) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    pairs = {pair: os.urandom(44) for pair in itertools.combinations(range(k), 2)}
    return [os.urandom(32) for _ in range(k)], pairs


def upload(i: int, arrays: list[np.ndarray], k: int, weight: int, private: list[bytes],
           pairs: dict[tuple[int, int], bytes], q: mv.Quantisation = Q) -> list[bytes]:
    pairwise = [(pairs[(min(i, j), max(i, j))], 1 if i > j else -1) for j in range(k) if j != i]
    return mv.mask_update(arrays, weight=weight, q=q, private_seed=private[i], pairwise=pairwise)


@pytest.mark.parametrize("q", [Q, mv.Quantisation(clipping_range=8.0, target_range=2**22,
                                                  mod_range=2**40)])
def test_masks_cancel_and_the_sum_is_exact(q: mv.Quantisation) -> None:
    k, rng = 4, np.random.default_rng(0)
    updates = [[on_grid(rng, s) for s in SHAPES] for _ in range(k)]
    private, pairs = secrets(k)
    total = mv.MaskedSum(q)
    for i in range(k):
        total.add(upload(i, updates[i], k, q.target_range, private, pairs, q))
    assert total.count == k and total.arrays[1].dtype == q.dtype
    average = mv.unmask(total.arrays, q=q, active=k, private_seeds=private, pairwise=[])
    for got, *site in zip(average, *updates, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, sum(a.astype(np.float64) for a in site) / k)


def test_each_upload_looks_uniform_not_like_the_update() -> None:
    k, rng = 3, np.random.default_rng(1)
    update = [np.zeros(50_000, np.float32)]  # quantises to the constant 2**21
    private, pairs = secrets(k)
    raw = upload(0, update, k, Q.target_range, private, pairs)
    assert len(raw) == 2 and len(raw[1]) == 50_000 * 4 + 128  # 4 bytes a parameter
    words = mv.npy_view(raw[1]).astype(np.int64)
    assert np.mean(words == 2**21) < 0.001
    assert abs(words.mean() / 2**32 - 0.5) < 0.01
    del rng


def test_a_dropped_sites_pairwise_masks_are_removed() -> None:
    k, rng = 4, np.random.default_rng(2)
    updates = [[on_grid(rng, s) for s in SHAPES] for _ in range(k)]
    private, pairs = secrets(k)
    total = mv.MaskedSum(Q)
    for i in range(3):  # site 3 masked nothing the server received: it dropped out
        total.add(upload(i, updates[i], k, Q.target_range, private, pairs))
    # the server reconstructs site 3's pairwise secrets: + where 3 > neighbour (it would have
    # added them), as Flower's unmask stage does
    dropped = [(pairs[(j, 3)], 1) for j in range(3)]
    average = mv.unmask(total.arrays, q=Q, active=3, private_seeds=private[:3],
                        pairwise=dropped)
    for idx, got in enumerate(average):
        want = sum(updates[i][idx].astype(np.float64) for i in range(3)) / 3
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_weights_and_stochastic_rounding_are_unbiased() -> None:
    private, _ = secrets(1)
    value = np.full(200_000, 0.3, np.float32)  # off the grid: rounds up or down at random
    weight = round(150 / 1000 * Q.target_range)
    total = mv.MaskedSum(Q)
    total.add(mv.mask_update([value], weight=weight, q=Q, private_seed=private[0], pairwise=[]))
    (got,) = mv.unmask(total.arrays, q=Q, active=1, private_seeds=private, pairwise=[])
    level = STEP * Q.target_range / weight  # one level, scaled back by the weight
    assert np.abs(got - 0.3).max() <= level * 1.0001
    assert abs(float(got.mean()) - 0.3) < 5 * level / np.sqrt(value.size)


def test_no_weight_gives_nan_not_an_error() -> None:
    private, _ = secrets(1)
    total = mv.MaskedSum(Q)
    total.add(mv.mask_update([np.ones(3, np.float32)], weight=0, q=Q, private_seed=private[0],
                             pairwise=[]))
    (got,) = mv.unmask(total.arrays, q=Q, active=1, private_seeds=private, pairwise=[])
    assert np.isnan(got).all()


@pytest.mark.parametrize("neighbours", [2, 8])
def test_masking_needs_no_full_size_copy_per_neighbour(neighbours: int) -> None:
    n = 1_000_000
    update = [np.random.default_rng(3).normal(0, 0.1, n).astype(np.float32)]
    pairwise = [(os.urandom(44), 1) for _ in range(neighbours)]
    tracemalloc.start()
    try:
        mv.mask_update(update, weight=2**21, q=Q, private_seed=os.urandom(32), pairwise=pairwise)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the upload itself (4 bytes a parameter) and its .npy copy, plus a few chunks
    assert peak < 2 * 4 * n + 40 * mv.CHUNK, peak


def test_a_version_1_upload_or_bad_bytes_are_refused() -> None:
    total = mv.MaskedSum(Q)
    with pytest.raises(ValueError, match="mask version 2"):
        total.add([mv.to_npy(np.zeros(3, np.int64))])  # Flower's (and version 1's) int64
    with pytest.raises(ValueError):
        mv.npy_view(b"not an npy file")
    good = mv.to_npy(np.arange(6, dtype=np.uint32).reshape(2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        mv.npy_view(good[:-4])
    np.testing.assert_array_equal(mv.npy_view(good), np.arange(6).reshape(2, 3))
    total.add([mv.to_npy(np.zeros(3, np.uint32))])
    with pytest.raises(ValueError, match="different shapes"):
        total.add([mv.to_npy(np.zeros(4, np.uint32))])
