"""SecAgg+ masks from ChaCha20 over the whole secret, replacing Flower's 32-bit fold."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen as flower_prg

from site_node.protocol.masking import chacha20_masks

SEED = bytes(range(32))


def test_known_answer() -> None:
    masks = chacha20_masks(SEED, 2**32, [(3,), ()])
    assert masks[0].tolist() == [2560350016, 1426737470, 2196645321]
    assert masks[1].shape == () and int(masks[1]) == 3385927511
    assert all(m.dtype == np.int64 for m in masks)


def test_the_same_secret_gives_the_same_masks_and_shapes() -> None:
    dims: list[tuple[int, ...]] = [(2, 3), (4,), ()]
    a, b = chacha20_masks(SEED, 2**20, dims), chacha20_masks(SEED, 2**20, dims)
    assert [m.shape for m in a] == dims
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # A pairwise secret is Flower's 44-byte base64 key: any length of at least 16 works.
    assert chacha20_masks(b"k" * 44, 2**32, [(2,)])[0].shape == (2,)


def test_word_permuted_secrets_collide_in_flower_but_not_here() -> None:
    swapped = SEED[4:8] + SEED[0:4] + SEED[8:]  # same XOR fold, different secret
    dims: list[tuple[int, ...]] = [(64,)]
    np.testing.assert_array_equal(flower_prg(SEED, 2**32, dims)[0],
                                  flower_prg(swapped, 2**32, dims)[0])
    assert not np.array_equal(chacha20_masks(SEED, 2**32, dims)[0],
                              chacha20_masks(swapped, 2**32, dims)[0])


def test_every_bit_of_the_secret_matters_and_values_cover_the_range() -> None:
    base = chacha20_masks(SEED, 2**32, [(4096,)])[0]
    flipped = bytes([SEED[0] ^ 1]) + SEED[1:]
    other = chacha20_masks(flipped, 2**32, [(4096,)])[0]
    assert np.mean(base == other) < 0.01
    assert base.min() >= 0 and base.max() < 2**32
    assert abs(base.mean() / 2**32 - 0.5) < 0.02  # roughly uniform


def test_the_largest_range_keeps_values_non_negative() -> None:
    masks = chacha20_masks(SEED, 2**63, [(1000,)])[0]
    assert masks.min() >= 0 and masks.max() > 2**62


@pytest.mark.parametrize(("seed", "rng"), [
    (b"short", 2**32), (bytes(15), 2**32), (SEED, 1000), (SEED, 2**65), (SEED, 1), (SEED, 0),
])
def test_bad_arguments_raise(seed: bytes, rng: int) -> None:
    with pytest.raises(ValueError):
        chacha20_masks(seed, rng, [(2,)])
