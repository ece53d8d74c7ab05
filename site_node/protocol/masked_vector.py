"""SecAgg+'s masked vector (mask version 2): the site's quantise-and-mask, the server's sum and
unmask, in chunks of bounded memory.

The arithmetic is Flower 1.42's SecAgg+ (``secaggplus_mod._collect_masked_vectors`` and the
workflow's collect and unmask stages): a site uploads ``[w, w·x]`` where ``w`` is its weight
``round(num_examples / max_weight · T)`` and ``w·x`` its update scaled by ``w / T``, clipped to
±``clipping_range`` and stochastically quantised to ``[0, T]`` (``T`` = quantisation range),
plus its private mask and its pairwise masks (+ towards a neighbour with a smaller node id, −
towards a larger one), modulo the power-of-two modulus. Only the representation is new:

- arithmetic runs in unsigned words of the modulus' width (:func:`masking.word_dtype`: 4
  bytes up to 2^32, Flower's default), whose wrap-around is the reduction; uploads are those
  words, half the bytes of Flower's int64;
- every pass goes :data:`CHUNK` elements at a time over the concatenation of the arrays (masks
  are one stream per secret over it, in order), so a site needs its output, one chunk of each
  temporary and no full-size mask per neighbour; the server sums uploads in place and removes
  all masks and dequantises in one chunked pass, to float32 (Flower returns float64, which
  doubled the global model);
- stochastic rounding is ``floor(v + U[0, 1))`` in float64 with NumPy's PCG64 from OS entropy
  (Flower: the same law in float32 with the legacy Mersenne Twister); it only dithers, the
  masks alone hide the update.

Uploads are NumPy ``.npy`` bytes, one per array, read back without a copy (:func:`npy_view`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from site_node.protocol.masking import MaskStream, word_dtype

#: Elements per pass: the temporaries of a pass are a few times CHUNK × 8 bytes.
CHUNK = 1 << 16
Pairwise = tuple[bytes, int]  # (shared secret, +1 to add its mask, -1 to subtract it)


@dataclass(frozen=True, kw_only=True)
class Quantisation:
    """SecAgg+'s number format: clipping range, quantisation range ``T``, modulus."""

    clipping_range: float
    target_range: int
    mod_range: int

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """The word the masked arithmetic runs in."""
        return word_dtype(self.mod_range)

    def reduce(self, words: np.ndarray) -> None:
        """Reduce ``words`` modulo the modulus, in place."""
        if self.mod_range < 2 ** (8 * self.dtype.itemsize):
            np.bitwise_and(words, self.dtype.type(self.mod_range - 1), out=words)


def to_npy(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (one copy of its data)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    data = memoryview(np.ascontiguousarray(array)).cast("B")  # type: ignore[arg-type]
    return b"".join([header.getvalue(), data])


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def npy_view(data: bytes) -> np.ndarray:
    """A read-only array over ``.npy`` bytes, without copying them.

    Raises
    ------
    ValueError
        If the bytes are not a C-ordered ``.npy`` array of plain numbers that they hold.
    """
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran, dtype = reader(stream)
    if fortran or dtype.hasobject or dtype.kind not in "fiu":
        raise ValueError(f"not a plain C-ordered numeric .npy array ({dtype}, fortran={fortran})")
    count = int(np.prod(shape, dtype=np.int64))
    if stream.tell() + count * dtype.itemsize != len(data):
        raise ValueError(f".npy array of shape {shape} {dtype} does not fit its {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell()).reshape(shape)


def _streams(seeds: Sequence[Pairwise], q: Quantisation) -> list[tuple[MaskStream, int]]:
    return [(MaskStream(seed, q.mod_range), sign) for seed, sign in seeds]


def _apply(out: np.ndarray, streams: Sequence[tuple[MaskStream, int]], buf: np.ndarray) -> None:
    """Add (+1) or subtract (-1) each stream's next ``out.size`` words to ``out``, in place."""
    words = buf[:out.size]
    for stream, sign in streams:
        stream.fill(words)
        (np.add if sign > 0 else np.subtract)(out, words, out=out)


def mask_update(arrays: Sequence[np.ndarray], *, weight: int, q: Quantisation,
                private_seed: bytes, pairwise: Sequence[Pairwise]) -> list[bytes]:
    """A site's masked upload: ``[weight]`` then each array, quantised and masked (``.npy``).

    ``weight`` is the site's quantised weight (Flower's ``q_ratio``); ``pairwise`` holds each
    neighbour's shared secret with +1 if the site's node id is larger, else -1.
    """
    streams = _streams([(private_seed, 1), *pairwise], q)
    buf = np.empty(CHUNK, dtype=q.dtype)
    head = np.array([weight], dtype=q.dtype)
    _apply(head, streams, buf)
    q.reduce(head)
    upload = [to_npy(head)]
    # clip(v·w/T, ±c) shifted by c and scaled by T/2c is clip(v·w/(2c) + T/2, 0, T)
    scale, offset = weight / (2 * q.clipping_range), q.target_range / 2
    scaled, noise = np.empty(CHUNK), np.empty(CHUNK)
    rng = np.random.default_rng()
    for array in arrays:
        flat, out = array.reshape(-1), np.empty(array.size, dtype=q.dtype)
        for start in range(0, flat.size, CHUNK):
            part, x = out[start:start + CHUNK], scaled[:min(CHUNK, flat.size - start)]
            np.multiply(flat[start:start + CHUNK], scale, out=x, dtype=np.float64)
            x += offset
            np.clip(x, 0, q.target_range, out=x)
            x += rng.random(out=noise[:x.size])
            np.copyto(part, x, casting="unsafe")  # truncation is floor here: x >= 0
            _apply(part, streams, buf)
            q.reduce(part)
        upload.append(to_npy(out.reshape(array.shape)))
        del out
    return upload


class MaskedSum:
    """The running sum of the sites' masked uploads (modulo the word), array by array."""

    def __init__(self, q: Quantisation) -> None:
        self.q = q
        self.arrays: list[np.ndarray] = []
        self.count = 0

    def add(self, upload: Sequence[bytes]) -> None:
        """Add one site's upload.

        Raises
        ------
        ValueError
            If it is not a list of ``.npy`` arrays of this format's word with the shapes of
            the first upload.
        """
        views = [npy_view(b) for b in upload]
        if any(v.dtype != self.q.dtype for v in views) or not views:
            raise ValueError(f"a masked upload must be arrays of {self.q.dtype} (mask version "
                             f"2), got {[str(v.dtype) for v in views]}")
        if not self.arrays:
            self.arrays = [v.copy() for v in views]
        elif [v.shape for v in views] != [a.shape for a in self.arrays]:
            raise ValueError("masked uploads of different shapes cannot be summed")
        else:
            for total, view in zip(self.arrays, views, strict=True):
                np.add(total, view, out=total)
        self.count += 1


def unmask(total: Sequence[np.ndarray], *, q: Quantisation, active: int,
           private_seeds: Sequence[bytes], pairwise: Sequence[Pairwise]) -> list[np.ndarray]:
    """The weighted average (float32) from the sum of ``active`` sites' masked uploads.

    ``private_seeds`` are the active sites' reconstructed private seeds (their masks are
    subtracted); ``pairwise`` the dropped sites' shared secrets with the sign to apply. Works
    in place on ``total``. With a total weight of 0 (no site trained) the average is NaN.
    """
    streams = _streams([*((s, -1) for s in private_seeds), *pairwise], q)
    buf = np.empty(CHUNK, dtype=q.dtype)
    head = total[0].reshape(-1)
    _apply(head, streams, buf)
    q.reduce(head)
    weight = int(head[0])
    step, shift = 2 * q.clipping_range / q.target_range, active * q.clipping_range
    inverse = q.target_range / weight if weight else float("nan")
    values, out = np.empty(CHUNK), []
    for array in total[1:]:
        flat, avg = array.reshape(-1), np.empty(array.size, dtype=np.float32)
        for start in range(0, flat.size, CHUNK):
            part, x = flat[start:start + CHUNK], values[:min(CHUNK, flat.size - start)]
            _apply(part, streams, buf)
            q.reduce(part)
            np.multiply(part, step, out=x)
            x -= shift
            x *= inverse
            avg[start:start + x.size] = x
        out.append(avg.reshape(array.shape))
    return out
