"""SecAgg+ mask generation from the full shared secret, with a cryptographic stream cipher.

Flower 1.42 derives every SecAgg+ mask with ``secaggplus_utils.pseudo_rand_gen``, which
XOR-folds the 32-byte secret to a 32-bit seed for NumPy's Mersenne Twister: each mask then has
at most 32 bits of entropy (a server can search them), and secrets that differ only by a
permutation of their 4-byte words give the same mask. This module replaces that one function,
narrowly, with ChaCha20 (from ``cryptography``) keyed by HKDF-SHA256 of the whole secret (Flower
passes 32 raw bytes for a private mask and a 44-byte base64 key for a pairwise mask): the masks
are its keystream read as little-endian 64-bit words, reduced modulo the power-of-two range.

Server and sites must use the same generator: each side installs it into Flower in its own
compatibility module (``site_node.flower_compat`` for the client mod, ``consortium.flower_compat``
for the server workflow). The protocol itself (key agreement, secret sharing, unmasking) remains
Flower's.
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
