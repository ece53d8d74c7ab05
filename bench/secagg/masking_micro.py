"""Client masking cost in isolation: Flower's real ``_collect_masked_vectors``, one process.

Three sites run Flower's own SecAgg+ client stages (``_setup``, ``_share_keys``) to get real
keys and encrypted shares; then site 0's ``_collect_masked_vectors`` (decrypt its neighbours'
shares, weight, quantise, private + 2 pairwise masks, mod 2^32, serialise) is timed by process
CPU time (one thread, so other jobs on the machine do not inflate it) with each mask generator
and quantiser. This is the clean measurement behind the simulation's "client masking time".

Usage::

    python bench/secagg/masking_micro.py            # 1M and 10M parameters
    python bench/secagg/masking_micro.py --params 1e6 --reps 5
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import simclient  # noqa: E402
from fastpath import fast_quantize  # noqa: E402
from flwr.app import ConfigRecord  # noqa: E402
from flwr.common import ndarrays_to_parameters  # noqa: E402
from flwr.common.secure_aggregation.secaggplus_constants import Key  # noqa: E402

mod: Any = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")

VARIANTS = (
    ("flower MT + flower quantize", "flower", False),
    ("chacha20 (product) + flower quantize", "chacha20", False),
    ("chacha20-32 + flower quantize", "chacha20-32", False),
    ("chacha20-32 + fast quantize", "chacha20-32", True),
)


def _three_sites() -> tuple[Any, dict[int, tuple[list[int], list[bytes]]]]:
    """Site states after SETUP and SHARE_KEYS, and the ciphertexts forwarded to each site."""
    setup = {
        Key.SAMPLE_NUMBER: 3,
        Key.SHARE_NUMBER: 3,
        Key.THRESHOLD: 2,
        Key.CLIPPING_RANGE: 8.0,
        Key.TARGET_RANGE: 2**22,
        Key.MOD_RANGE: 2**32,
        Key.MAX_WEIGHT: 1000.0,
    }
    states = {}
    for nid in (11, 22, 33):
        st = mod.SecAggPlusState()
        st.nid = nid
        mod._setup(st, ConfigRecord(dict(setup)))
        states[nid] = st
    keys = {str(n): [s.pk1, s.pk2] for n, s in states.items()}
    forwarded: dict[int, tuple[list[int], list[bytes]]] = {n: ([], []) for n in states}
    for nid, st in states.items():
        res = mod._share_keys(st, ConfigRecord(dict(keys)))
        for dst, ct in zip(res[Key.DESTINATION_LIST], res[Key.CIPHERTEXT_LIST], strict=True):
            forwarded[dst][0].append(nid)
            forwarded[dst][1].append(ct)
    return states, forwarded


def run(params: int, reps: int) -> list[dict[str, Any]]:
    """Median CPU seconds of site 0's masking per variant."""
    rng = np.random.default_rng(0)
    shapes = [(params - 1020,), (1000,), (10,), (10,)]
    update = ndarrays_to_parameters(
        [(0.01 * rng.standard_normal(s)).astype(np.float32) for s in shapes]
    )
    states, forwarded = _three_sites()
    srcs, ctxts = forwarded[11]
    configs = ConfigRecord({Key.CIPHERTEXT_LIST: ctxts, Key.SOURCE_LIST: srcs})
    original_quantize = mod.quantize
    out = []
    for label, gen, fastq in VARIANTS:
        mod.pseudo_rand_gen = simclient.GENERATORS[gen]
        mod.quantize = fast_quantize if fastq else original_quantize
        times = []
        for _ in range(reps + 1):
            start = time.process_time()
            res = mod._collect_masked_vectors(states[11], configs, 100, update)
            times.append(time.process_time() - start)
        masked = sum(len(b) for b in res[Key.MASKED_PARAMETERS])
        out.append(
            {
                "params": params,
                "variant": label,
                "cpu_s": statistics.median(times[1:]),
                "masked_bytes": masked,
            }
        )
    mod.quantize = original_quantize
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="1e6,1e7")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", type=Path, default=HERE / "results" / "masking_micro.json")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    for n in (int(float(x)) for x in args.params.split(",")):
        for row in run(n, args.reps):
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "masking_micro",
                "clock": "process CPU time",
                "neighbours": 2,
                "results": rows,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
