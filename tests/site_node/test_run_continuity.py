"""One run, one site: a later round of a run is refused before training when the site's data are
not those the run first trained on, or when its ledger lacks a round whose receipt the consortium
holds from it (the run resumed with another site home). Real Opacus, real ledger (issue 14)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from site_node import client as client_mod
from site_node.client import SiteClient
from site_node.data.fingerprint import data_fingerprint
from site_node.home import SiteHome
from site_node.model import initial_weights
from site_node.privacy import data_record
from site_node.privacy.ledger import SiteLedger
from site_node.protocol import wire
from tests.site_node.data_files import edited_csv, example_file
from tests.site_node.factories import instruction, settings, site_home
from tests.site_node.test_client import HEART_RUN


def ledger_state(home: SiteHome) -> tuple[int, int]:
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        return len(ledger.events()), len(ledger.refusals())


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "train_dp", lambda *a, **k: pytest.fail("trained"))


def test_a_later_round_on_other_data_is_refused_naming_both_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = site_home(tmp_path)
    original = tmp_path / "hungary.csv"
    shutil.copy(example_file("hungary"), original)
    other = edited_csv(tmp_path, "hungary", lambda i, r: None if i == 0 else r, "other.csv")
    incoming = initial_weights(HEART_RUN, 0)
    _, n, _ = SiteClient(settings(home, data_path=original)).fit(
        incoming, instruction("run-d", 1, rounds=3).to_config())
    assert n > 0
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        first = data_record.recorded(ledger, "run-d")
    assert first is not None and first.data_sha256 == data_fingerprint(original)
    with monkeypatch.context() as patched:
        forbid_training(patched)
        weights, n, metrics = SiteClient(settings(home, data_path=other)).fit(
            incoming, instruction("run-d", 2, rounds=3).to_config())
    reason = str(metrics[wire.REFUSAL])
    assert weights is incoming and n == 0
    assert "run run-d" in reason and "data changed" in reason
    assert data_fingerprint(original)[:12] in reason and data_fingerprint(other)[:12] in reason
    assert ledger_state(home) == (1, 0)  # nothing spent, and the run is not refused for good
    _, n, _ = SiteClient(settings(home, data_path=original)).fit(
        incoming, instruction("run-d", 2, rounds=3).to_config())
    assert n > 0 and ledger_state(home) == (2, 0)


def test_another_site_home_is_refused_when_the_consortium_holds_earlier_receipts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = site_home(tmp_path)
    incoming = initial_weights(HEART_RUN, 0)
    first = instruction("run-h", 1, rounds=3)
    _, n, _ = SiteClient(settings(real)).fit(incoming, first.to_config())
    assert n > 0
    second = replace(instruction("run-h", 2, rounds=3), policy=first.policy, task=first.task,
                     receipts_held=(("hungary", (1,)),))
    stray_home = site_home(tmp_path / "another")  # same site, fresh keys, empty ledger
    with monkeypatch.context() as patched:
        forbid_training(patched)
        weights, n, metrics = SiteClient(settings(stray_home)).fit(incoming, second.to_config())
    reason = str(metrics[wire.REFUSAL])
    assert weights is incoming and n == 0
    assert "another site home?" in reason and "round(s) 1 " in reason
    assert str(stray_home.state_dir) in reason
    assert ledger_state(stray_home) == (0, 0)
    _, n, _ = SiteClient(settings(real)).fit(incoming, second.to_config())
    assert n > 0 and ledger_state(real) == (2, 0)
