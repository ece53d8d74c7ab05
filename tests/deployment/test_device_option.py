"""``site-node start --device``: a typo or a device the machine lacks is refused before any
process starts, naming the option; ``site-node status`` shows the device the node trains on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from site_node.deployment.supernode import NodeSettings, command, training_device
from site_node.home import init_site_home
from tests.cli.invoke import Outcome
from tests.deployment.node_cli import TASK, site_node
from tests.site_node.data_files import example_file


def _start(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
           *extra: str) -> Outcome:
    home = init_site_home(tmp_path / "home", "hungary")
    return site_node(capsys, monkeypatch, "start", "--home", str(home.root), "--superlink",
                     "127.0.0.1:1", "--insecure", "--data", str(example_file("hungary")),
                     "--task", str(TASK), *extra)


@pytest.mark.parametrize("typo", ["gpu", "cuda:x", "CUDA"])
def test_a_device_typo_is_refused_naming_the_option(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        no_spawn: list[object], typo: str) -> None:
    result = _start(capsys, monkeypatch, tmp_path, "--device", typo)
    assert result.code == 2
    assert f"--device: '{typo}' is not a device" in result.output
    assert "Traceback" not in result.output and no_spawn == []


def test_cuda_on_a_machine_without_cuda_is_refused_before_the_node_starts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        no_spawn: list[object]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _start(capsys, monkeypatch, tmp_path, "--device", "cuda:0")
    assert result.code == 2
    assert "--device: cuda:0 asked for, but this machine has no CUDA device" in result.output
    assert "Traceback" not in result.output and no_spawn == []


def test_the_device_reaches_the_node_config_and_status_shows_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    home = init_site_home(tmp_path / "home", "hungary")
    settings = NodeSettings("127.0.0.1:1", None, example_file("hungary"), TASK, insecure=True,
                            device="cpu", max_physical_batch=64)
    line = " ".join(command(home, settings))
    assert "device='cpu'" in line and "max-physical-batch='64'" in line
    assert "device=" not in " ".join(command(home, NodeSettings(
        "127.0.0.1:1", None, example_file("hungary"), TASK, insecure=True)))
    home.write_status(state="stopped", device=training_device(settings))
    out = site_node(capsys, monkeypatch, "status", "--home", str(home.root)).out
    assert "device    cpu, physical batches of at most 64 (asked: cpu)" in out
    auto = NodeSettings("127.0.0.1:1", None, example_file("hungary"), TASK)
    assert training_device(auto) == "cpu"  # auto, on a machine without a GPU
