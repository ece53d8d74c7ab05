"""Client side of the SecAgg+ scaling benchmark: a synthetic site and a timing mod.

This module is imported by every Ray worker of the simulation (the ClientApp refers to it by
name, so its module-level counters are real per-process globals). It never trains: the site's
``fit`` returns the global parameters plus 0.001, a synthetic update of the same size, because
the benchmark measures the cost of aggregating an update, not of computing one.

Timing: :func:`install_client_generator` wraps, in the worker process, the two functions of
Flower's ``secaggplus_mod`` that do the masking work:

- ``_collect_masked_vectors``: decrypt the neighbours' shares, weight, quantize, add the private
  and pairwise masks, reduce mod 2^32, serialise: the client's *masking time*;
- ``pseudo_rand_gen``: mask generation alone (Flower's Mersenne Twister or the product's
  ChaCha20), a part of the above.

:class:`ProbeMod`, the outermost mod, times every message the site handles and writes one JSON
line per message to a log file (Ray workers are separate processes): stage, handling time,
counter deltas, and the bytes of the reply (the upload).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastpath import chacha20_masks_32, chacha20_masks_v1, fast_quantize
from flwr.app import Context, Message
from flwr.client import Client, NumPyClient
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

_mod_module: Any = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")

NUM_EXAMPLES = 100  # each site's weight; the workflow's max_weight must be >= this
UPDATE_DELTA = np.float32(0.001)

MaskGen = Callable[[bytes, int, list[tuple[int, ...]]], list[Any]]
GENERATORS: dict[str, MaskGen] = {
    "flower": pseudo_rand_gen,
    "chacha20": chacha20_masks_v1,  # the product's mask version 1 (before version 2)
    "chacha20-32": chacha20_masks_32,
}

#: Per-process counters (seconds / calls), read by ProbeMod before and after each message.
COUNTERS: dict[str, float] = {
    "mask_gen_s": 0.0,
    "mask_gen_calls": 0,
    "masking_s": 0.0,
    "masking_cpu_s": 0.0,
    "fit_s": 0.0,
}
_ORIGINAL_COLLECT = _mod_module._collect_masked_vectors
_ORIGINAL_QUANTIZE = _mod_module.quantize


def _timed_generator(gen: MaskGen, counters: dict[str, float]) -> MaskGen:
    def timed(seed: bytes, num_range: int, dims: list[tuple[int, ...]]) -> list[Any]:
        start = time.perf_counter()
        out = gen(seed, num_range, dims)
        counters["mask_gen_s"] += time.perf_counter() - start
        counters["mask_gen_calls"] += 1
        return out

    timed.generator = gen  # type: ignore[attr-defined]
    return timed


def _timed_collect(*args: Any, **kwargs: Any) -> Any:
    start, cpu = time.perf_counter(), time.process_time()
    out = _ORIGINAL_COLLECT(*args, **kwargs)
    COUNTERS["masking_s"] += time.perf_counter() - start
    COUNTERS["masking_cpu_s"] += time.process_time() - cpu
    return out


def install_client_generator(name: str, quantize_fix: bool = False) -> None:
    """In this process, make ``secaggplus_mod`` mask with generator ``name``, timed.

    ``quantize_fix`` swaps Flower's quantiser for :func:`fastpath.fast_quantize`.
    """
    current = getattr(_mod_module.pseudo_rand_gen, "generator", None)
    if current is not GENERATORS[name]:
        _mod_module.pseudo_rand_gen = _timed_generator(GENERATORS[name], COUNTERS)
    _mod_module._collect_masked_vectors = _timed_collect
    _mod_module.quantize = fast_quantize if quantize_fix else _ORIGINAL_QUANTIZE


class SyntheticClient(NumPyClient):
    """Returns the received parameters + 0.001 (no training)."""

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        start = time.perf_counter()
        out = [p + UPDATE_DELTA for p in parameters]
        COUNTERS["fit_s"] += time.perf_counter() - start
        return out, NUM_EXAMPLES, {}


def client_fn(context: Context) -> Client:
    """Flower's legacy client factory."""
    return SyntheticClient().to_client()


def message_upload_bytes(msg: Message) -> tuple[int, int]:
    """(all payload bytes, masked-vector bytes) of a reply: arrays, bytes and numbers."""
    total = masked = 0
    if not msg.has_content():
        return 0, 0
    content = msg.content
    for rec in content.array_records.values():
        total += sum(len(arr.data) for arr in rec.values())
    for name, cfg in content.config_records.items():
        for key, value in cfg.items():
            if isinstance(value, bytes):
                size = len(value)
            elif isinstance(value, list):
                size = sum(len(v) if isinstance(v, bytes) else 8 for v in value)
            else:
                size = 8
            total += size
            if name == RECORD_KEY_CONFIGS and key == Key.MASKED_PARAMETERS:
                masked += size
    for mrec in content.metric_records.values():
        total += 8 * len(mrec)
    return total, masked


class ProbeMod:
    """Outermost client mod: times each message and logs it (one JSON line) to ``log_path``.

    Parameters
    ----------
    generator : str or None
        "flower" or "chacha20" to (re)install that mask generator in this worker process;
        None for plain FedAvg.
    quantize_fix : bool
        Use :func:`fastpath.fast_quantize` in the SecAgg+ client mod.
    log_path : str
        Absolute path of the shared JSON-lines log (appended, one ``write`` per line).
    """

    def __init__(self, generator: str | None, log_path: str, quantize_fix: bool = False) -> None:
        self.generator = generator
        self.log_path = log_path
        self.quantize_fix = quantize_fix

    def __call__(
        self, msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        if self.generator is not None:
            install_client_generator(self.generator, self.quantize_fix)
        stage = msg.metadata.message_type
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and Key.STAGE in configs:
            stage = str(configs[Key.STAGE])
        before = dict(COUNTERS)
        start = time.perf_counter()
        out = call_next(msg, ctxt)
        handle_s = time.perf_counter() - start
        total, masked = message_upload_bytes(out)
        line = {
            "node": msg.metadata.dst_node_id,
            "round": msg.metadata.group_id,
            "stage": stage,
            "t_end": time.time(),
            "handle_s": handle_s,
            "upload_bytes": total,
            "masked_bytes": masked,
            "pid": os.getpid(),
            "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        line.update({k: COUNTERS[k] - before[k] for k in COUNTERS})
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        return out
