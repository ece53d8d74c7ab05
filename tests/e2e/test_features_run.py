"""An image task with fixed features runs end to end: ``consortium run --task FILE --policy
TERMS --data SITE=PATH ...`` (real processes, Flower simulation, Opacus DP-SGD on the scattering
features computed at each site, SecAgg+), the choice records the features, and ``consortium
compare`` evaluates on the same features. A site whose backbone file is not the task's is
refused before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.terms_only import run_terms_only
from tests.e2e.test_own_task import run
from tests.site_node import feature_data as fd

pytestmark = pytest.mark.slow
SITES = ("north", "south", "east")


def _files(tmp: Path) -> dict[str, Path]:
    out = {}
    for i, site in enumerate(SITES):
        (tmp / site).mkdir()
        out[site] = fd.npz(tmp / site / "images.npz", 48, seed=i)
    return out


def test_a_task_with_scattering_features_trains_under_terms_only(tmp_path: Path) -> None:
    task = fd.write_task(tmp_path)
    files = _files(tmp_path)
    done, env = run_terms_only(tmp_path, task, files, rounds=2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Run ended: completed" in done.stdout
    exported = json.loads(run("consortium", "export", env=env, timeout=120).stdout)
    assert exported["choice"]["inputs"]["features"] == {"kind": "scattering", "dim": 400}
    assert len(exported["rounds"]) == 2


def test_a_site_with_another_backbone_file_is_refused_before_training(tmp_path: Path) -> None:
    files = _files(tmp_path)
    right = fd.backbone(tmp_path / "backbone.pt")
    for site in SITES:  # each site's backbone lies beside its data; east's is another file
        fd.backbone(tmp_path / site / "backbone.pt", dim=6 if site != "east" else 5)
    task = fd.write_task(tmp_path, fd.pretrained("backbone.pt", right))
    done, _ = run_terms_only(tmp_path, task, files, rounds=1)
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "features.file backbone.pt" in text and right in text, text[-3000:]
    assert "east" in text
