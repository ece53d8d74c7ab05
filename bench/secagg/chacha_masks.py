"""The product's SecAgg+ mask generator, copied for the benchmark.

Verbatim copy of ``chacha20_masks`` from ``consortium/masking.py`` at commit 2320dbf (the
product package is being restructured; the copy keeps this benchmark independent of where the
function lands). ChaCha20 keyed by HKDF-SHA256 of the whole secret replaces Flower's
``pseudo_rand_gen`` (a Mersenne Twister seeded with a 32-bit XOR-fold of the secret).
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: ChaCha20's 16-byte nonce (counter + nonce): a fixed label separates this use of the key.
NONCE = b"hc-secagg+-mask\x00"
INFO = b"hospital-consortium secagg+ mask v1"


def chacha20_masks(
    seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """Masks uniform on ``[0, num_range)``, one int64 array per shape, from a secret seed.

    Raises
    ------
    ValueError
        If the seed is shorter than 16 bytes or ``num_range`` is not a power of two <= 2**63.
    """
    if len(seed) < 16:
        raise ValueError(f"mask seed must have at least 16 bytes, got {len(seed)}")
    if num_range < 2 or num_range & (num_range - 1) or num_range > 2**63:
        raise ValueError(f"mask range must be a power of two in [2, 2**63], got {num_range}")
    sizes = [math.prod(d) for d in dimensions_list]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(seed)
    encryptor = Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * sum(sizes)))
    values = (np.frombuffer(stream, dtype="<u8") & np.uint64(num_range - 1)).astype(np.int64)
    out, offset = [], 0
    for dims, size in zip(dimensions_list, sizes, strict=True):
        out.append(values[offset : offset + size].reshape(dims).copy())
        offset += size
    return out
