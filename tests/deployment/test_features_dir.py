"""``--features-dir``: the folder where a site's node looks up the task's pretrained backbone file
(default: beside the data). ``site-node check-data`` and ``site-node start`` take it; a path that
is not a folder is refused before any process starts, naming the option and the path; the node
config carries it (absolute) and ``site-node status`` shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from site_node.deployment.supernode import NodeSettings, check, command, features_line
from site_node.errors import NodeStartError
from site_node.home import init_site_home
from tests.deployment.node_cli import TASK, site_node
from tests.site_node import feature_data as fd
from tests.site_node.data_files import example_file


def _backbone_elsewhere(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An image task whose backbone lies in ``models/``, and a site's data in ``data/``."""
    models = tmp_path / "models"
    models.mkdir()
    sha = fd.backbone(models / "backbone.pt")
    task = fd.write_task(tmp_path, fd.pretrained("backbone.pt", sha))
    (tmp_path / "data").mkdir()
    return task, fd.npz(tmp_path / "data" / "site.npz", 12), models


def test_a_missing_features_dir_is_refused_before_the_node_starts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        no_spawn: list[object]) -> None:
    home = init_site_home(tmp_path / "home", "hungary")
    result = site_node(capsys, monkeypatch, "start", "--home", str(home.root), "--superlink",
                       "127.0.0.1:1", "--insecure", "--data", str(example_file("hungary")),
                       "--task", str(TASK), "--features-dir", str(tmp_path / "gone"))
    assert result.code == 2
    assert f"--features-dir: no such folder: {tmp_path / 'gone'}" in result.err
    assert "Traceback" not in result.output and no_spawn == []


def test_a_missing_features_dir_is_refused_by_check_data(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    task, data, _ = _backbone_elsewhere(tmp_path)
    result = site_node(capsys, monkeypatch, "check-data", "--task", str(task), "--data",
                       str(data), "--features-dir", str(data))
    assert result.code == 2
    assert f"--features-dir: not a folder: {data}" in result.err
    assert "Traceback" not in result.output


def test_check_data_finds_the_backbone_in_the_features_dir_and_refuses_without_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    task, data, models = _backbone_elsewhere(tmp_path)
    without = site_node(capsys, monkeypatch, "check-data", "--task", str(task), "--data",
                        str(data), "--json")
    assert without.code == 2
    report = json.dumps(json.loads(without.out)["report"])
    assert "features.file backbone.pt" in report and str(tmp_path / "data") in report
    monkeypatch.chdir(tmp_path)
    given = site_node(capsys, monkeypatch, "check-data", "--task", str(task), "--data",
                      str(data), "--features-dir", "models", "--json")
    assert given.code == 0, given.output
    assert json.loads(given.out)["features_dir"] == str(models)


def test_start_checks_the_backbone_in_the_features_dir(tmp_path: Path) -> None:
    home = init_site_home(tmp_path / "home", "north")
    task, data, models = _backbone_elsewhere(tmp_path)
    beside = NodeSettings("127.0.0.1:1", None, data, task, insecure=True)
    with pytest.raises(NodeStartError, match=r"features\.file backbone\.pt"):
        check(home, beside)
    check(home, NodeSettings("127.0.0.1:1", None, data, task, insecure=True,
                             features_dir=models))  # no error: the node may start


def test_the_features_dir_reaches_the_node_config_and_status_shows_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    home = init_site_home(tmp_path / "home", "hungary")
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    settings = NodeSettings("127.0.0.1:1", None, example_file("hungary"), TASK, insecure=True,
                            features_dir=Path("models"))  # relative: resolved here
    assert f"features-dir='{tmp_path / 'models'}'" in " ".join(command(home, settings))
    assert "features-dir=" not in " ".join(command(home, NodeSettings(
        "127.0.0.1:1", None, example_file("hungary"), TASK, insecure=True)))
    home.write_status(state="stopped", device="cpu", features_dir=features_line(settings))
    out = site_node(capsys, monkeypatch, "status", "--home", str(home.root)).out
    assert f"features  {tmp_path / 'models'} (backbone folder)" in out
    home.write_status(features_dir=features_line(NodeSettings(
        "127.0.0.1:1", None, example_file("hungary"), TASK)))  # a restart without the option
    assert "features " not in site_node(capsys, monkeypatch, "status", "--home",
                                        str(home.root)).out
