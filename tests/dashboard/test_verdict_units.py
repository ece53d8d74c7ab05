"""Unit tests of :mod:`dashboard.verdict`: the store stamp the verdict cache is keyed on, the
mechanism table read from signed receipts, and the cross-check of unsigned ε figures against
them (a property test)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.store.run_store import RunStore
from dashboard.verdict import (
    Recomputed,
    Verdict,
    epsilon_cross_check,
    receipt_mechanism_frame,
    store_stamp,
)
from site_node.protocol.receipt import Receipt
from tests.dashboard.stores import SITES, write_run

_RECEIPT_COLUMNS = ["run_id", "round", "site", "receipt_json", "signature", "key_fingerprint",
                    "log_seq"]


def _receipt(site: str, rnd: int, eps: float) -> Receipt:
    return Receipt(run_id="r", round=rnd, site=site, policy_sha256="p" * 64,
                   site_policy_sha256="", task_sha256="t" * 64, noise_multiplier=1.1,
                   sample_rate=0.2, steps=10, max_grad_norm=1.0, accountant="rdp", delta=1e-5,
                   epsilon=eps, lifetime_epsilon=eps, epsilon_ceiling=3.0,
                   lifetime_epsilon_ceiling=10.0, num_examples=100, update_sha256="0" * 64,
                   issued_at="2026-11-28T00:00:00+00:00")


def _receipts(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": "r", "round": rnd, "site": site, "receipt_json": text,
                          "signature": "00", "key_fingerprint": "fp", "log_seq": i}
                         for i, (site, rnd, text) in enumerate(rows)], columns=_RECEIPT_COLUMNS)


def _sites(rows: list[tuple[str, int, float | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"round": rnd, "site": site, "epsilon": eps} for site, rnd, eps in rows],
                        columns=["round", "site", "epsilon"]).astype({"epsilon": "float64"})


def test_the_store_stamp_changes_with_every_write(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    assert store_stamp(path) == (-1, -1, -1, -1)
    with RunStore(path) as store:
        write_run(store, "a", rounds=1)
    before = store_stamp(path)
    assert store_stamp(path) == before  # nothing written, nothing changes
    with sqlite3.connect(path) as conn:  # a write that may stay in the write-ahead log
        conn.execute("UPDATE runs SET stop_reason='x'")
    assert store_stamp(path) != before


def test_the_mechanism_table_reads_the_signed_receipts() -> None:
    good = _receipt("hungary", 1, 0.5).canonical_bytes().decode()
    frame = receipt_mechanism_frame(
        _receipts([("hungary", 1, good), ("cleveland", 1, '{"epsilon": 0.1}')]),
        Verdict(verified=True, recomputed=(Recomputed("hungary", 1, 0.501),)))
    assert list(frame["site"]) == ["cleveland", "hungary"]  # the sites' usual order
    broken, ok = frame.iloc[0], frame.iloc[1]
    assert broken["problem"].startswith("unreadable receipt") and math.isnan(broken["epsilon"])
    assert ok["epsilon"] == 0.5 and ok["recomputed_epsilon"] == 0.501 and pd.isna(ok["problem"])
    assert ok["noise_multiplier"] == 1.1 and ok["accountant"] == "rdp"
    unverified = receipt_mechanism_frame(_receipts([("hungary", 1, good)]), None)
    assert unverified["recomputed_epsilon"].isna().all()


_figure = st.tuples(st.sampled_from(SITES), st.integers(1, 6),
                    st.floats(0.01, 10, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(figures=st.lists(_figure, max_size=12, unique_by=lambda f: f[:2]),
       signed=st.lists(st.booleans(), min_size=12, max_size=12),
       altered=st.lists(st.booleans(), min_size=12, max_size=12))
def test_every_unsigned_epsilon_is_matched_flagged_or_named_unsigned(
        figures: list[tuple[str, int, float]], signed: list[bool], altered: list[bool]) -> None:
    receipts = []
    for (site, rnd, eps), has, alter in zip(figures, signed, altered, strict=False):
        if has:
            claim = eps * 1.5 if alter else eps
            receipts.append((site, rnd, _receipt(site, rnd, claim).canonical_bytes().decode()))
    check = epsilon_cross_check(_sites([*figures, ("cleveland", 9, None)]), _receipts(receipts))
    n = len(figures)
    expected_mismatch = sum(h and a for h, a in zip(signed[:n], altered[:n], strict=True))
    expected_unsigned = sum(not h for h in signed[:n])
    assert len(check.mismatches) == expected_mismatch
    assert len(check.unsigned) == expected_unsigned
    assert check.signed + expected_mismatch + expected_unsigned == len(figures)
