"""SecAgg+ masks from the full shared secret, with a standard stream cipher (mask version 2).

Flower 1.42 derives every SecAgg+ mask with ``secaggplus_utils.pseudo_rand_gen``, which
XOR-folds the 32-byte secret to a 32-bit seed for NumPy's Mersenne Twister: each mask then has
at most 32 bits of entropy (a server can search them), and secrets that differ only by a
permutation of their 4-byte words give the same mask. Here a mask is the keystream of ChaCha20
(``cryptography``'s, no home-made primitive) keyed by HKDF-SHA256 of the whole secret (Flower
passes 32 raw bytes for a private mask and a 44-byte base64 key for a pairwise mask), read as
little-endian words of 4 bytes when the mask range is at most 2^32 (Flower's default modulus),
else of 8 bytes, reduced modulo the power-of-two range. :class:`MaskStream` hands the keystream
out in order, a chunk at a time, so a mask of any length never needs a full-size buffer.

:data:`MASK_VERSION` names this construction (HKDF label, nonce, word width) together with the
masked-vector format of :mod:`site_node.protocol.masked_vector`. Sites and server must use the
same version, or their masks do not cancel: the instruction states the server's version, the
preflight answer the site's, and each side refuses the other's if it differs
(:func:`mismatch`). Version 1 (8 keystream bytes per element, int64 uploads) is not spoken.
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The mask generator and masked-vector format this release speaks.
MASK_VERSION = 2
INFO = b"hospital-consortium secagg+ mask v2"
#: ChaCha20's 16 bytes: a 4-byte block counter starting at 0, then a fixed 12-byte label (the
#: key is unique per secret, so one nonce per key is enough).
NONCE = bytes(4) + b"hc-secagg+-m"
MIN_SEED_BYTES = 16
MAX_RANGE = 2**63
_ZEROS = bytes(1 << 20)  # the plaintext whose encryption is the keystream


def word_dtype(num_range: int) -> np.dtype[np.unsignedinteger]:
    """The unsigned word masks of ``num_range`` are drawn as (and masked arithmetic runs in).

    Raises
    ------
    ValueError
        If ``num_range`` is not a power of two in [2, 2**63].
    """
    if num_range < 2 or num_range & (num_range - 1) or num_range > MAX_RANGE:
        raise ValueError(f"mask range must be a power of two in [2, 2**63], got {num_range}")
    return np.dtype("<u4") if num_range <= 2**32 else np.dtype("<u8")


class MaskStream:
    """The mask of one secret, as a stream of words uniform on ``[0, num_range)``.

    Raises
    ------
    ValueError
        If the seed is shorter than 16 bytes or the range is not a power of two <= 2**63.
    """

    def __init__(self, seed: bytes, num_range: int) -> None:
        self.dtype = word_dtype(num_range)
        if len(seed) < MIN_SEED_BYTES:
            raise ValueError(f"mask seed must have at least {MIN_SEED_BYTES} bytes, "
                             f"got {len(seed)}")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(seed)
        self._encryptor = Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor()
        bits = 8 * self.dtype.itemsize
        self._reduce = None if num_range == 2**bits else self.dtype.type(num_range - 1)

    def fill(self, out: np.ndarray) -> None:
        """Write the stream's next ``out.size`` words into ``out`` (C-contiguous, of
        :attr:`dtype`)."""
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"mask buffer must be C-contiguous {self.dtype}, got {out.dtype}")
        raw = memoryview(out.reshape(-1)).cast("B")  # type: ignore[arg-type]
        for start in range(0, len(raw), len(_ZEROS)):
            piece = raw[start:start + len(_ZEROS)]
            self._encryptor.update_into(_ZEROS[:len(piece)], piece)
        if self._reduce is not None:
            np.bitwise_and(out, self._reduce, out=out)


def masks(seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]
          ) -> list[np.ndarray]:
    """The mask of ``seed`` cut into int64 arrays of the given shapes, in order (the
    signature of Flower's ``pseudo_rand_gen``, which each side's ``flower_compat`` replaces
    with this function)."""
    stream = MaskStream(seed, num_range)
    out = []
    for dims in dimensions_list:
        words = np.empty(math.prod(dims), dtype=stream.dtype)
        stream.fill(words)
        out.append(words.astype(np.int64).reshape(dims))
    return out


def stated_version(value: object) -> int | None:
    """A mask version as stated on the wire (None when absent or not an integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mismatch(stated: object) -> str | None:
    """None if ``stated`` is this release's mask version, else what the other side states."""
    version = stated_version(stated)
    if version == MASK_VERSION:
        return None
    if version is None:
        return "no SecAgg+ mask version (a release before mask versions)"
    return f"SecAgg+ mask version {version}"
