"""Fixture run stores for the dashboard tests, written with the server's writer API."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from consortium.records import (  # noqa: E402
    ROUND_FAILED,
    ROUND_OK,
    RUN_COMPLETED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)
from consortium.store import RunStore  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SITE_NAMES = ("Cleveland", "Hungary (Budapest)", "VA Long Beach", "Switzerland (Zurich/Basel)")
SECAGG = {"num_shares": 4, "reconstruction_threshold": 3, "timeout": 30.0,
          "clipping_range": 8.0, "quantization_range": 4194304, "max_weight": 1000.0}
POLICY = {"name": "default", "epsilon_ceiling": 8.0, "delta": 1e-5, "rounds": 10}
POLICY_SHA = "ab" * 32


def site_record(site: str, rnd: int, *, trained: bool = True) -> SiteRoundRecord:
    """A plausible figure of ``site`` after round ``rnd`` (ε grows like √rounds)."""
    k = SITES.index(site) if site in SITES else 4
    return SiteRoundRecord(
        site=site, accuracy=0.55 + 0.03 * rnd + 0.01 * k, loss=0.7 - 0.03 * rnd,
        num_examples=60 + 10 * k, num_train_examples=240 + 40 * k,
        epsilon=round((1.2 + 0.2 * k) * math.sqrt(rnd), 4), noise_multiplier=1.1,
        sample_rate=0.05, steps=20, max_grad_norm=1.0, accountant="rdp", trained=trained,
    )


def write_run(
    store: RunStore,
    run_id: str,
    *,
    rounds: int,
    status: str = RUN_COMPLETED,
    sites: tuple[str, ...] = SITES,
    planned: int = 10,
    started_at: str = "2025-01-01T10:00:00+00:00",
    failed: Iterable[int] = (),
    dropouts: Mapping[int, Iterable[str]] | None = None,
    not_trained: Mapping[int, Iterable[str]] | None = None,
) -> None:
    """Write a run with ``rounds`` rounds; failed rounds have no site rows."""
    failed, dropouts, not_trained = set(failed), dropouts or {}, not_trained or {}
    store.start_run(RunRecord(
        run_id=run_id, started_at=started_at, status=RUN_RUNNING, engine="simulation",
        policy_sha256=POLICY_SHA, policy_json=json.dumps(POLICY, sort_keys=True), delta=1e-5,
        epsilon_ceiling=8.0, rounds_planned=planned, seed=7, sites=sites,
        secagg_json=json.dumps(SECAGG),
    ))
    for r in range(1, rounds + 1):
        if r in failed:
            rec = RoundRecord(round=r, status=ROUND_FAILED, started_at=started_at,
                              finished_at=started_at, duration_s=30.0,
                              failure_reason="too few sites for SecAgg+ reconstruction",
                              policy_sha256=POLICY_SHA)
        else:
            present = [s for s in sites if s not in set(dropouts.get(r, ()))]
            site_rows = tuple(site_record(s, r, trained=s not in set(not_trained.get(r, ())))
                              for s in present)
            accs = [s.accuracy for s in site_rows if s.accuracy is not None]
            rec = RoundRecord(
                round=r, status=ROUND_OK, started_at=started_at, finished_at=started_at,
                duration_s=10.0 + r, accuracy_mean=sum(accs) / len(accs),
                accuracy_weighted=sum(accs) / len(accs) + 0.005, loss_mean=0.7 - 0.03 * r,
                loss_weighted=0.69 - 0.03 * r, policy_sha256=POLICY_SHA, sites=site_rows,
            )
        store.record_round(run_id, rec, checkpoint=b"npz", checkpoint_sha256="00" * 32)
    if status != RUN_RUNNING:
        store.finish_run(run_id, status=status, reason="rounds done",
                         finished_at="2025-01-01T11:00:00+00:00")


def _new(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def missing_store(tmp_path: Path) -> Path:
    """A path where no store exists."""
    return tmp_path / "nowhere" / "runs.sqlite"


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    """A store with the schema but no run."""
    with _new(tmp_path) as store:
        return store.path


@pytest.fixture
def one_run_store(tmp_path: Path) -> Path:
    """One completed run of 5 rounds at the four hospitals."""
    with _new(tmp_path) as store:
        write_run(store, "run-one", rounds=5, planned=5)
        return store.path


@pytest.fixture
def several_runs_store(tmp_path: Path) -> Path:
    """Three runs; the newest (``run-c``) has 3 rounds and a site the dashboard does not know."""
    with _new(tmp_path) as store:
        write_run(store, "run-a", rounds=4, started_at="2025-01-01T10:00:00+00:00")
        write_run(store, "run-b", rounds=6, status="stopped",
                  started_at="2025-01-02T10:00:00+00:00")
        write_run(store, "run-c", rounds=3, sites=(*SITES, "oslo"),
                  started_at="2025-01-03T10:00:00+00:00")
        return store.path


@pytest.fixture
def failed_store(tmp_path: Path) -> Path:
    """A run whose round 3 failed, with hungary dropping out of round 2 and
    long_beach evaluating without training in round 4."""
    with _new(tmp_path) as store:
        write_run(store, "run-fail", rounds=5, status="failed", failed=[3],
                  dropouts={2: ["hungary"]}, not_trained={4: ["long_beach"]})
        return store.path


@pytest.fixture
def live_store(tmp_path: Path) -> Path:
    """A running run with 3 of 10 rounds recorded."""
    with _new(tmp_path) as store:
        write_run(store, "run-live", rounds=3, status=RUN_RUNNING,
                  started_at="2025-01-05T10:00:00+00:00")
        return store.path


@pytest.fixture
def garbage_store(tmp_path: Path) -> Path:
    """A file that is not a SQLite database at all."""
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    return path


@pytest.fixture
def partial_store(tmp_path: Path) -> Path:
    """A SQLite file the server has created but not yet given its schema."""
    import sqlite3

    path = tmp_path / "runs.sqlite"
    sqlite3.connect(path).close()
    path.touch()
    return path
