"""SecAgg+ masks (mask version 2): ChaCha20 keyed by HKDF-SHA256 of the whole secret,
replacing Flower's Mersenne Twister seeded by a 32-bit fold."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen as flower_prg

from site_node.protocol import masking
from site_node.protocol.masking import MaskStream, masks

SEED = bytes(range(32))


def _reference_keystream(seed: bytes, nbytes: int) -> bytes:
    """The construction, written out with the standard primitives only."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"hospital-consortium secagg+ mask v2").derive(seed)
    nonce = bytes(4) + b"hc-secagg+-m"  # block counter 0, then a fixed 12-byte label
    return Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor().update(bytes(nbytes))


def test_known_answer() -> None:
    got = masks(SEED, 2**32, [(3,), ()])
    assert got[0].tolist() == [1171233977, 2169481785, 997378874]
    assert got[1].shape == () and int(got[1]) == 1027883215
    assert all(m.dtype == np.int64 for m in got)
    assert masks(SEED, 2**48, [(2,)])[0].tolist() == [187162961091769, 71258799786810]
    assert masks(SEED, 2**20, [(3,)])[0].tolist() == [1023161, 1026617, 183098]
    assert masking.MASK_VERSION == 2


@pytest.mark.parametrize(("num_range", "width"), [(2**32, 4), (2**20, 4), (2**48, 8)])
def test_masks_are_the_standard_keystream_read_as_little_endian_words(num_range: int,
                                                                      width: int) -> None:
    n = 70_000  # crosses ChaCha20 blocks and the generator's own pieces
    words = np.frombuffer(_reference_keystream(SEED, width * n), dtype=f"<u{width}")
    expected = (words & np.uint64(num_range - 1)).astype(np.int64)
    got = masks(SEED, num_range, [(n - 5, ), (5,)])
    np.testing.assert_array_equal(np.concatenate([m.ravel() for m in got]), expected)


def test_a_stream_read_in_chunks_is_the_same_stream() -> None:
    whole = masks(SEED, 2**32, [(10_000,)])[0]
    stream, parts = MaskStream(SEED, 2**32), []
    for size in (1, 999, 4096, 4904):
        buf = np.empty(size, dtype=stream.dtype)
        stream.fill(buf)
        parts.append(buf.astype(np.int64))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(ValueError, match="C-contiguous"):
        stream.fill(np.empty(4, dtype=np.int64))


def test_word_permuted_secrets_collide_in_flower_but_not_here() -> None:
    swapped = SEED[4:8] + SEED[0:4] + SEED[8:]  # same XOR fold, different secret
    dims: list[tuple[int, ...]] = [(64,)]
    np.testing.assert_array_equal(flower_prg(SEED, 2**32, dims)[0],
                                  flower_prg(swapped, 2**32, dims)[0])
    assert not np.array_equal(masks(SEED, 2**32, dims)[0], masks(swapped, 2**32, dims)[0])


def test_every_bit_of_the_secret_matters_and_values_cover_the_range() -> None:
    base = masks(SEED, 2**32, [(4096,)])[0]
    other = masks(bytes([SEED[0] ^ 1]) + SEED[1:], 2**32, [(4096,)])[0]
    assert np.mean(base == other) < 0.01
    assert base.min() >= 0 and base.max() < 2**32
    assert abs(base.mean() / 2**32 - 0.5) < 0.02  # roughly uniform
    # A pairwise secret is Flower's 44-byte base64 key: any length of at least 16 works.
    assert masks(b"k" * 44, 2**32, [(2,)])[0].shape == (2,)


@pytest.mark.parametrize(("seed", "rng"), [
    (b"short", 2**32), (bytes(15), 2**32), (SEED, 1000), (SEED, 2**64), (SEED, 1), (SEED, 0),
])
def test_bad_arguments_raise(seed: bytes, rng: int) -> None:
    with pytest.raises(ValueError):
        masks(seed, rng, [(2,)])


@pytest.mark.parametrize(("stated", "problem"), [
    (2, None), (1, "SecAgg+ mask version 1"), (None, "no SecAgg+ mask version"),
    ("2", "no SecAgg+ mask version"), (True, "no SecAgg+ mask version"),
])
def test_another_or_no_mask_version_is_a_mismatch(stated: object, problem: str | None) -> None:
    got = masking.mismatch(stated)
    assert got == problem if problem is None else (got is not None and problem in got)
