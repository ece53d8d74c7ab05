"""``consortium run --device``: every simulated site trains there; a typo or a device this
machine lacks stops the run before anything starts (exit 2, naming --device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from consortium.cli import main as consortium_main
from consortium.run import ray_session
from consortium.run.simulation import uses_gpu
from site_node.settings import NodeSettings
from tests.cli.invoke import invoke


@pytest.mark.parametrize(("device", "said"), [
    ("gpu", "--device: 'gpu' is not a device"),
    ("cuda:x", "--device: 'cuda:x' is not a device"),
    ("cuda", "--device: cuda asked for, but this machine has no CUDA device"),
])
def test_a_bad_or_missing_device_stops_the_run_before_anything_starts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, device: str,
        said: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started: list[object] = []
    monkeypatch.setattr(ray_session, "start_in_background", started.append)
    result = invoke(consortium_main, "consortium", ["run", "--device", device], capsys,
                    monkeypatch)
    assert result.code == 2 and said in result.output
    assert "Traceback" not in result.output and started == []


def test_sites_on_cuda_get_a_share_of_the_gpu_from_ray(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    assert ray_session.backend_config(4)["client_resources"]["num_gpus"] == 0.0
    assert ray_session.backend_config(4, gpu=True)["client_resources"]["num_gpus"] == 0.5
    sites = [NodeSettings(site="a", data_path=None, state_dir=tmp_path, device="auto")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not uses_gpu(sites)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert uses_gpu(sites)
