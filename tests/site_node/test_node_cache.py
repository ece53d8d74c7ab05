"""Values kept between a deployed node's ClientApp processes: the RDP curve of a step and the
per-sample gradient mode, read back exactly, and recomputed when the cache is absent or bad."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from opacus.accountants.analysis import rdp as rdp_analysis

from site_node import grad_mode, node_cache
from site_node.privacy import accountant


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "cache"
    node_cache.configure(folder)
    accountant._unit_rdp.cache_clear()
    yield folder
    node_cache.configure(None)
    accountant._unit_rdp.cache_clear()


def test_nothing_is_kept_until_a_folder_is_named(tmp_path: Path) -> None:
    node_cache.configure(None)
    node_cache.put("kind", "key", 1)
    assert node_cache.get("kind", "key") is None
    assert not list(tmp_path.iterdir())


def test_a_value_is_read_back_as_written(cache: Path) -> None:
    node_cache.put("kind", "key", [0.1, 1e-300, float("inf")])
    node_cache.put("kind", "other", "x")
    assert node_cache.get("kind", "key") == [0.1, 1e-300, float("inf")]
    assert node_cache.get("kind", "other") == "x"
    assert node_cache.get("kind", "missing") is None
    (cache / "kind.json").write_text("{not json")
    assert node_cache.get("kind", "key") is None  # a damaged file is no value, not an error


def test_the_folder_and_its_files_are_private_to_the_user(cache: Path) -> None:
    node_cache.put("kind", "key", 1)
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (cache / "kind.json").stat().st_mode & 0o077 == 0


def test_the_rdp_curve_is_kept_and_a_fresh_process_reads_it_back_exactly(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = accountant._unit_rdp(1.1, 0.05)
    expected = rdp_analysis.compute_rdp(q=0.05, noise_multiplier=1.1, steps=1,
                                        orders=accountant.RDP_ORDERS)
    assert list(curve) == [float(x) for x in expected]
    accountant._unit_rdp.cache_clear()  # as in a new ClientApp process

    def never(**_: object) -> None:
        raise AssertionError("computed again")

    monkeypatch.setattr(rdp_analysis, "compute_rdp", never)
    assert accountant._unit_rdp(1.1, 0.05) == curve


def test_a_kept_curve_of_the_wrong_shape_is_computed_again(cache: Path) -> None:
    key = accountant._curve_key(1.1, 0.05)
    node_cache.put(accountant.CURVE_CACHE, key, [0.0, 0.0])
    curve = accountant._unit_rdp(1.1, 0.05)
    assert len(curve) == len(accountant.RDP_ORDERS) and curve[-1] > 0
    stored = json.loads((cache / f"{accountant.CURVE_CACHE}.json").read_text())
    assert stored[key] == list(curve)


def test_the_chosen_gradient_mode_is_kept_and_not_tried_again(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    shape = {"input_shape": (4,), "num_classes": 2, "batch_size": 8}
    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    mode = grad_mode.mode_for(model, **shape)
    monkeypatch.setattr(grad_mode, "_CHOSEN", {})  # as in a new ClientApp process

    def never(*_: object, **__: object) -> None:
        raise AssertionError("tried again")

    monkeypatch.setattr(grad_mode, "choose", never)
    assert grad_mode.mode_for(model, **shape) == mode
