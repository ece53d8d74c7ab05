"""Fast tests of the SecAgg+ benchmark's prototype fixes and helpers (no simulation).

Run: ``.venv/bin/python -m pytest bench/secagg/test_fastpath.py -q``
(``SECAGG_E2E=1`` adds one real 4-site Flower simulation per mode, ~1 minute.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flwr.common.secure_aggregation.quantization import quantize

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fastpath  # noqa: E402


def test_chacha20_masks_32_is_the_keystream_reduced_mod_range() -> None:
    seed, dims = os.urandom(32), [(1,), (1000, 3), (7,)]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=fastpath.INFO_32).derive(seed)
    stream = (
        Cipher(algorithms.ChaCha20(key, fastpath.NONCE), mode=None)
        .encryptor()
        .update(bytes(4 * 3008))
    )
    expected = np.frombuffer(stream, dtype="<u4").astype(np.int64)
    got = fastpath.chacha20_masks_32(seed, 2**32, dims)
    assert [a.shape for a in got] == dims
    assert all(a.dtype == np.int64 for a in got)
    assert np.array_equal(np.concatenate([a.ravel() for a in got]), expected)
    small = fastpath.chacha20_masks_32(seed, 2**20, dims)
    assert np.array_equal(small[1].ravel(), expected[1:3001] & (2**20 - 1))
    assert fastpath.chacha20_masks_32(seed, 2**32, dims)[1].tolist() == got[1].tolist()


@pytest.mark.parametrize("bad", [(b"short", 2**32), (b"x" * 32, 3), (b"x" * 32, 2**33)])
def test_chacha20_masks_32_rejects_bad_arguments(bad: tuple[bytes, int]) -> None:
    with pytest.raises(ValueError):
        fastpath.chacha20_masks_32(bad[0], bad[1], [(2,)])


def test_fast_quantize_has_flowers_range_and_rounding_law() -> None:
    rng = np.random.default_rng(0)
    x = [np.concatenate([rng.normal(0, 3, 200_000), [-20.0, 20.0, 8.0, -8.0]])]
    fast, ref = fastpath.fast_quantize(x, 8.0, 2**22)[0], quantize(x, 8.0, 2**22)[0]
    assert fast.dtype == np.int32 and fast.shape == ref.shape
    assert fast.min() >= 0 and fast.max() <= 2**22
    assert np.abs(fast.astype(np.int64) - ref).max() <= 1  # both round the same value up or down
    # unbiased: rounding up with probability frac(v)
    v = np.full(400_000, 0.3, dtype=np.float64)
    q = fastpath.fast_quantize([v], 8.0, 2**22)[0]
    exact = (0.3 + 8.0) * 2**22 / 16.0
    assert abs(q.mean() - exact) < 5 * 0.5 / np.sqrt(len(v))


def test_shared_result_mixin_returns_the_shared_parameters() -> None:
    calls: list[Any] = []

    class Base:
        fit_metrics_aggregation_fn = None

        def aggregate_fit(self, rnd: int, results: list[Any], failures: list[Any]) -> Any:
            calls.append(rnd)
            return "averaged", {}

    class Strategy(fastpath.SharedResultFedAvgMixin, Base):
        pass

    shared = object()
    same = [(None, SimpleNamespace(parameters=shared, num_examples=1, metrics={}))] * 3
    assert Strategy().aggregate_fit(1, same, []) == (shared, {})
    assert calls == []
    different = [
        (None, SimpleNamespace(parameters=object(), num_examples=1, metrics={})) for _ in range(2)
    ]
    assert Strategy().aggregate_fit(2, different, [])[0] == "averaged"
    assert calls == [2]


def test_float32_mixin_casts_float64_aggregates_only() -> None:
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

    class Base:
        def __init__(self, arrays: list[np.ndarray]) -> None:
            self.arrays = arrays

        def aggregate_fit(self, rnd: int, results: list[Any], failures: list[Any]) -> Any:
            return ndarrays_to_parameters(self.arrays), {"m": 1}

    class Strategy(fastpath.Float32ParametersMixin, Base):
        pass

    mixed = [np.ones(3, dtype=np.float64), np.arange(2, dtype=np.int64)]
    params, metrics = Strategy(mixed).aggregate_fit(1, [], [])
    out = parameters_to_ndarrays(params)
    assert [a.dtype for a in out] == [np.float32, np.int64]
    assert metrics == {"m": 1}
    same = [np.ones(3, dtype=np.float32)]
    assert parameters_to_ndarrays(Strategy(same).aggregate_fit(1, [], [])[0])[0].dtype == np.float32


def test_fast_poll_grid_collects_all_replies_and_delegates() -> None:
    class FakeGrid:
        run_id = 7

        def __init__(self) -> None:
            self.pending: list[str] = []
            self.pulls = 0

        def push_messages(self, messages: list[str]) -> list[str]:
            self.pending = list(messages)
            return list(messages)

        def pull_messages(self, ids: set[str]) -> list[Any]:
            self.pulls += 1
            if self.pulls < 3 or not self.pending:
                return []
            mid = self.pending.pop()
            return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid))]

    fake = FakeGrid()
    grid = fastpath.FastPollGrid(fake, interval=0.001)
    replies = grid.send_and_receive(["a", "b"], timeout=5.0)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b"]
    assert grid.run_id == 7
    fake2 = FakeGrid()
    fake2.pulls = -(10**9)  # never answers
    assert fastpath.FastPollGrid(fake2, interval=0.001).send_and_receive(["x"], timeout=0.05) == []


@pytest.mark.skipif(not os.environ.get("SECAGG_E2E"), reason="set SECAGG_E2E=1 (Ray, ~1 min)")
@pytest.mark.parametrize("mode", ["plain", "secagg-flower", "secagg-chacha20"])
def test_one_small_simulation_aggregates_correctly(mode: str) -> None:
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "secagg_scaling.py"),
            "--cell",
            f"4:1000:{mode}",
            "--rounds",
            "2",
            "--fixes",
            "chacha32,quantize,fedavg,f32,poll" if "chacha" in mode else "",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    import json

    rec = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    assert rec["aggregate_ok"], rec
    assert rec["rounds_done"] == 2
