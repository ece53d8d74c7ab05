"""A site refuses, before any training and spending nothing, data that do not fit the task, a
task it did not agree to, and too few rows for the sampling rate: the reply has weight 0 and the
reason in clear, and its ledger holds no DP event."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from policies.loader import load_policy, with_sites
from policies.task_loader import LoadedTask, load_task
from site_node import client as client_mod
from site_node.client import SiteClient
from site_node.home import SiteHome
from site_node.model import initial_weights
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from site_node.protocol import wire
from tests.site_node.data import synthetic
from tests.site_node.data.images import class_folders, image_task, npz_file
from tests.site_node.data.test_tabular_validation import CASES
from tests.site_node.factories import instruction, policy, settings, site_home


@pytest.fixture(autouse=True)
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused round must not train")

    monkeypatch.setattr(client_mod, "train_dp", forbidden)


def spent(home: SiteHome) -> int:
    """DP events in the site's ledger (0 if it has none)."""
    if not (home.state_dir / LEDGER_FILE).is_file():
        return 0
    with SiteLedger.in_state_dir(home.state_dir, readonly=True) as ledger:
        return len(ledger.events())


def refusal(home: SiteHome, data: Path, task: LoadedTask, **kw: object) -> str:
    node = settings(home, data_path=data, **kw)  # type: ignore[arg-type]
    incoming = initial_weights(task.task, 0)
    weights, n, metrics = SiteClient(node).fit(incoming, instruction(task=task).to_config())
    assert weights is incoming and n == 0
    assert set(metrics) == {wire.SITE, wire.REFUSAL}
    assert spent(home) == 0
    return str(metrics[wire.REFUSAL])


@pytest.mark.parametrize("fmt", [".csv", ".parquet"])
@pytest.mark.parametrize("kind", list(CASES))
def test_tabular_data_that_do_not_fit_are_refused_spending_nothing(
        tmp_path: Path, fmt: str, kind: str) -> None:
    edit, where, rule, _ = CASES[kind]
    path = synthetic.write_table(tmp_path / f"site{fmt}", edit(synthetic.table(40)))
    reason = refusal(site_home(tmp_path), path, synthetic.task(tmp_path))
    assert reason.startswith("site hungary refuses before any training: site" + fmt)
    assert f"{where}: {rule}" in reason


@pytest.mark.parametrize("source", ["folders", "npz"])
def test_image_data_that_do_not_fit_are_refused_spending_nothing(tmp_path: Path, source: str
                                                                  ) -> None:
    if source == "folders":
        data = class_folders(tmp_path / "scans")
        (data / "clear" / "x.png").write_bytes(b"broken")
        expected = "class folder clear: unreadable"
    else:
        data = npz_file(tmp_path / "s.npz", 24, train_images=np.zeros((24, 5, 5), np.uint8))
        expected = "array train_images: wrong image size"
    reason = refusal(site_home(tmp_path), data, image_task(tmp_path))
    assert expected in reason


def test_a_task_the_site_did_not_agree_to_is_refused(tmp_path: Path) -> None:
    agreed = synthetic.write_task(tmp_path)
    other = load_task(shutil.copy(agreed, tmp_path / "other.yaml"))
    changed = tmp_path / "changed.yaml"
    changed.write_text(agreed.read_text().replace("[0, 20]", "[0, 30]"), encoding="utf-8")
    data = synthetic.write_table(tmp_path / "site.csv", synthetic.table(40))
    home = site_home(tmp_path)
    # the same task in another file is the same task: admitted up to training
    with pytest.raises(AssertionError, match="must not train"):
        SiteClient(settings(home, data_path=data, task_path=agreed)).fit(
            initial_weights(other.task, 0), instruction(task=other).to_config())
    reason = refusal(home, data, load_task(changed), task_path=agreed)
    assert "asks for task ward-readmission" in reason and "was started for task" in reason


def test_too_few_rows_for_the_sampling_rate_are_refused_at_admission(tmp_path: Path) -> None:
    data = synthetic.write_table(tmp_path / "site.csv", synthetic.table(12))  # 9 train rows
    task = synthetic.task(tmp_path)
    home = site_home(tmp_path)
    loaded = policy(dp__sample_rate=0.1)  # q·N = 0.9 < 1
    node = settings(home, data_path=data)
    incoming = initial_weights(task.task, 0)
    _, n, metrics = SiteClient(node).fit(incoming, instruction(loaded=loaded, task=task)
                                         .to_config())
    assert n == 0 and "expected batch of 0.90 < 1" in str(metrics[wire.REFUSAL])
    assert spent(home) == 0


def test_every_example_site_admits_its_data(tmp_path: Path) -> None:
    """The shipped examples' data fit their tasks at the shipped policies' sampling rates (the
    round reaches training, which this test forbids)."""
    from policies.example import load_example

    for name in ("heart-disease", "digits"):
        ex = load_example(name)
        task = load_task(ex.task)
        loaded = with_sites(load_policy(ex.policy), ex.sites, "example")
        for site, path in ex.data.items():
            home = site_home(tmp_path / name, site)
            node = settings(home, data_path=path)
            with pytest.raises(AssertionError, match="must not train"):
                SiteClient(node).fit(initial_weights(task.task.for_members(loaded.policy.sites),
                                                     0),
                                     instruction(loaded=loaded, task=task).to_config())


def test_the_agreed_tasks_identity_is_kept_by_its_bytes_and_changed_bytes_are_parsed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message runs in a fresh process; the node keeps the identity of its task file in
    its cache, keyed by the file's bytes: an edit is never hidden by the cache."""
    from site_node import node_cache

    monkeypatch.setattr(node_cache, "_DIR", tmp_path / "cache")
    agreed = synthetic.write_task(tmp_path)
    first = client_mod.agreed_task(agreed)
    assert first == (load_task(agreed).name, load_task(agreed).sha256)
    parsed: list[str] = []
    monkeypatch.setattr(client_mod, "parse_task",
                        lambda data, source: parsed.append(source) or load_task(agreed))
    assert client_mod.agreed_task(agreed) == first and parsed == []  # from the cache
    monkeypatch.undo()
    monkeypatch.setattr(node_cache, "_DIR", tmp_path / "cache")
    agreed.write_text(agreed.read_text().replace("[0, 20]", "[0, 30]"), encoding="utf-8")
    changed = client_mod.agreed_task(agreed)
    assert changed[1] == load_task(agreed).sha256 != first[1]
    agreed.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(client_mod.ConfigError, match=str(agreed.name)):
        client_mod.agreed_task(agreed)
    agreed.unlink()
    with pytest.raises(client_mod.ConfigError, match="cannot read file"):
        client_mod.agreed_task(agreed)
