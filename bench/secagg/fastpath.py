"""Prototype fixes for the cost of Flower 1.42's SecAgg+ (measured by ``secagg_scaling.py``).

Each is small enough for the product to adopt in its own compat module:

- :func:`fast_quantize`: the same stochastic quantisation as Flower's
  ``secure_aggregation.quantization.quantize`` (values in ``[0, target_range]``, rounded up with
  probability equal to the fractional part) in one float64 buffer with in-place operations and
  NumPy's PCG64 generator instead of ~6 temporaries and the legacy Mersenne Twister.
  Patched into the client mod as ``secaggplus_mod.quantize``.
- :func:`chacha20_masks_v1`: the product's mask version 1 (what the measurements below call
  "the product's ChaCha20"), kept for before/after comparisons.
- :func:`chacha20_masks_32`: the product's ChaCha20 masks drawing 4 keystream bytes per element
  when the mask range is at most 2^32 (Flower's ``modulus_range`` must be < 2^32), written
  into one preallocated buffer: half the keystream and no zero-filled input. A different
  output than ``chacha20_masks`` (another HKDF label), so sites and server must switch together.
- :class:`SharedResultFedAvgMixin`: SecAgg+'s unmask stage gives *every* site's ``FitRes`` the
  same aggregated ``Parameters`` object, and FedAvg then deserialises and re-averages K
  identical copies; the mixin returns that object directly when all results share it.
- :class:`Float32ParametersMixin`: SecAgg+ dequantises to float64 and FedAvg keeps it, so
  the global model silently doubles in size after the first SecAgg+ round; cast it back.
- :class:`FastPollGrid`: a ``Grid`` proxy whose ``send_and_receive`` polls ``pull_messages``
  at a chosen interval (Flower's deployment ``HttpGrid`` sleeps 3 s between pulls and its
  simulation grid 0.1 s; SecAgg+ waits on that four times a round instead of once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The product's mask version 1 (before ``site_node/protocol/masking.py`` became version 2):
#: kept here so the benchmarks can measure the product as it was.
NONCE = b"hc-secagg+-mask\x00"
INFO_V1 = b"hospital-consortium secagg+ mask v1"
INFO_32 = b"hospital-consortium secagg+ mask v2 (32-bit words)"

_rng = np.random.default_rng()


def fast_quantize(
    parameters: list[np.ndarray], clipping_range: float, target_range: int
) -> list[np.ndarray]:
    """Flower's stochastic quantisation, fused: ``floor(scaled + U[0,1))`` as int32.

    ``P(result = ceil(x)) = frac(x)``, exactly as Flower's ``_stochastic_round``; float64
    keeps the fractional part exact at ``target_range`` = 2^22.
    """
    quantizer = target_range / (2 * clipping_range)
    out: list[np.ndarray] = []
    for arr in parameters:
        x = np.asarray(arr, dtype=np.float64).copy()
        np.clip(x, -clipping_range, clipping_range, out=x)
        x += clipping_range
        x *= quantizer
        x += _rng.random(x.shape)
        np.floor(x, out=x)
        out.append(x.astype(np.int32))
    return out


def chacha20_masks_v1(
    seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """The product's mask version 1, verbatim: 8 keystream bytes per element, int64 masks."""
    if len(seed) < 16:
        raise ValueError(f"mask seed must have at least 16 bytes, got {len(seed)}")
    if num_range < 2 or num_range & (num_range - 1) or num_range > 2**63:
        raise ValueError(f"mask range must be a power of two in [2, 2**63], got {num_range}")
    sizes = [math.prod(d) for d in dimensions_list]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO_V1).derive(seed)
    encryptor = Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * sum(sizes)))
    values = (np.frombuffer(stream, dtype="<u8") & np.uint64(num_range - 1)).astype(np.int64)
    out, offset = [], 0
    for dims, size in zip(dimensions_list, sizes, strict=True):
        out.append(values[offset : offset + size].reshape(dims).copy())
        offset += size
    return out


def chacha20_masks_32(
    seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """Masks uniform on ``[0, num_range)`` (int64), 4 keystream bytes per element.

    Raises
    ------
    ValueError
        If the seed is shorter than 16 bytes or ``num_range`` is not a power of two <= 2**32.
    """
    if len(seed) < 16:
        raise ValueError(f"mask seed must have at least 16 bytes, got {len(seed)}")
    if num_range < 2 or num_range & (num_range - 1) or num_range > 2**32:
        raise ValueError(f"mask range must be a power of two in [2, 2**32], got {num_range}")
    sizes = [math.prod(d) for d in dimensions_list]
    total = sum(sizes)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO_32).derive(seed)
    encryptor = Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor()
    words = np.zeros(total, dtype="<u4")  # zero plaintext: the output is the keystream
    view = words.data.cast("B")
    encryptor.update_into(view, view)  # in place (cryptography allows buf == data here)
    if num_range < 2**32:
        words &= np.uint32(num_range - 1)
    flat = words.astype(np.int64)
    out, offset = [], 0
    for dims, size in zip(dimensions_list, sizes, strict=True):
        out.append(flat[offset : offset + size].reshape(dims))
        offset += size
    return out


class SharedResultFedAvgMixin:
    """Skip FedAvg's re-aggregation when every result carries the same Parameters object.

    Mix in before ``FedAvg``: ``class Strategy(SharedResultFedAvgMixin, FedAvg)``. Only the
    parameters are short-circuited; metrics are aggregated as FedAvg would.
    """

    def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
        if (
            results
            and not failures
            and all(res.parameters is results[0][1].parameters for _, res in results)
        ):
            metrics: dict[str, Any] = {}
            fn = getattr(self, "fit_metrics_aggregation_fn", None)
            if fn is not None:
                metrics = fn([(res.num_examples, res.metrics) for _, res in results])
            return results[0][1].parameters, metrics
        return super().aggregate_fit(server_round, results, failures)  # type: ignore[misc]


class Float32ParametersMixin:
    """Cast the aggregate back to float32.

    SecAgg+'s unmask stage dequantises to float64 (``quantization.dequantize`` uses
    ``astype(float)``) and FedAvg keeps that dtype, so after one SecAgg+ round the global
    model — and every site's download and deserialisation — is twice the size of a float32
    model's. Mix in first: ``class S(Float32ParametersMixin, SharedResultFedAvgMixin, FedAvg)``.
    """

    def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

        params, metrics = super().aggregate_fit(server_round, results, failures)  # type: ignore[misc]
        if params is None:
            return params, metrics
        arrays = parameters_to_ndarrays(params)
        if any(a.dtype == np.float64 for a in arrays):
            params = ndarrays_to_parameters(
                [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]
            )
        return params, metrics


class FastPollGrid:
    """Wrap a Flower ``Grid``: ``send_and_receive`` polls every ``interval`` seconds.

    Everything else is delegated to the wrapped grid. Pass it to the workflow instead of the
    grid Flower hands the ServerApp (``workflow(FastPollGrid(grid), context)``).
    """

    def __init__(self, grid: Any, interval: float = 0.01) -> None:
        self._grid = grid
        self.interval = interval

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Any], *, timeout: float | None = None
    ) -> list[Any]:
        ids = set(self._grid.push_messages(messages))
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Any] = []
        while timeout is None or time.time() < end:
            got = list(self._grid.pull_messages(ids))
            replies.extend(got)
            ids.difference_update(m.metadata.reply_to_message_id for m in got)
            if not ids:
                break
            time.sleep(self.interval)
        return replies
