"""Client side of ``product_round.py``: a synthetic site and a probe mod (imported by every Ray
worker, so its module state is per worker process).

The site does not train: ``fit`` returns the global parameters + 0.001 (``simclient``). The
probe, the outermost mod, installs the masking of the cell's mode in its worker, times the
masked-vector step (CPU and wall; in the traced round also its peak traced allocation, with
``tracemalloc``), and writes one JSON line per message: stage, handling time, reply bytes,
worker peak RSS.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from fastpath import chacha20_masks_v1
from flwr.app import Context, Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from simclient import message_upload_bytes

from site_node import flower_compat

_MOD: Any = importlib.import_module(flower_compat.CLIENT_MASK_MODULE)
FLOWER_COLLECT = _MOD._collect_masked_vectors
COUNTERS: dict[str, float] = {"masking_s": 0.0, "masking_cpu_s": 0.0, "masking_peak_bytes": 0}
TRACE = {"on": False}


def _timed(collect: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if TRACE["on"]:
            tracemalloc.start()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return collect(*args, **kwargs)
        finally:
            COUNTERS["masking_s"] += time.perf_counter() - start
            COUNTERS["masking_cpu_s"] += time.process_time() - cpu
            if TRACE["on"]:
                COUNTERS["masking_peak_bytes"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()

    timed.inner = collect  # type: ignore[attr-defined]
    return timed


def install(mode: str) -> None:
    """The masking of ``mode`` in this worker: ``secagg-v1`` is the product before mask
    version 2 (Flower's masked-vector step, the product's old ChaCha20 generator);
    ``secagg-v2`` the product now (``site_node.flower_compat.install_masking``)."""
    if getattr(_MOD._collect_masked_vectors, "mode", None) == mode:
        return
    if mode == "secagg-v2":
        flower_compat.install_masking()
        collect = flower_compat.collect_masked_vectors
    else:
        _MOD.pseudo_rand_gen = chacha20_masks_v1
        collect = FLOWER_COLLECT
    timed = _timed(collect)
    timed.mode = mode  # type: ignore[attr-defined]
    _MOD._collect_masked_vectors = timed


class ProbeMod:
    """Outermost mod: masking of ``mode`` installed, every message timed and logged."""

    def __init__(self, mode: str, log_path: str, traced_round: str) -> None:
        self.mode, self.log_path, self.traced_round = mode, log_path, traced_round

    def __call__(self, msg: Message, ctxt: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
        if self.mode != "plain":
            install(self.mode)
        stage = msg.metadata.message_type
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and Key.STAGE in configs:
            stage = str(configs[Key.STAGE])
        TRACE["on"] = msg.metadata.group_id == self.traced_round
        before = dict(COUNTERS)
        start = time.perf_counter()
        out = call_next(msg, ctxt)
        total, masked = message_upload_bytes(out)
        line = {"node": msg.metadata.dst_node_id, "round": msg.metadata.group_id,
                "stage": stage, "t_end": time.time(), "handle_s": time.perf_counter() - start,
                "upload_bytes": total, "masked_bytes": masked, "pid": os.getpid(),
                "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "masking_s": COUNTERS["masking_s"] - before["masking_s"],
                "masking_cpu_s": COUNTERS["masking_cpu_s"] - before["masking_cpu_s"]}
        if TRACE["on"] and COUNTERS["masking_peak_bytes"]:
            line["masking_peak_bytes"] = COUNTERS["masking_peak_bytes"]
            COUNTERS["masking_peak_bytes"] = 0
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        return out
