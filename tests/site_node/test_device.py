"""A site's training device: parsed once at the edge, resolved on this machine, refused clearly
when the machine lacks it."""

from __future__ import annotations

import pytest
import torch

from site_node.device import parse_device, resolve_device
from site_node.errors import ConfigError

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", " cpu "])
def test_device_specs_are_accepted(spec: str) -> None:
    assert parse_device(spec) == spec.strip()


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:", "CUDA", "cuda:01", "cuda:-1",
                                  "mps", "", "cpu:0", "cuda:1234", 0, None, True])
def test_a_typo_is_a_config_error_naming_the_field(spec: object) -> None:
    with pytest.raises(ConfigError, match=r"--device: .* is not a device; expected auto, cpu"):
        parse_device(spec, field="--device")


def test_cpu_and_auto_resolve_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_takes_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_cuda_on_a_machine_without_cuda_is_refused_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=r"--device: cuda.* this machine has no CUDA"):
            resolve_device(spec, field="--device")


def test_a_cuda_index_the_machine_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"cuda:1 asked for, but this machine has 1 CUDA"):
        resolve_device("cuda:1")


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device (none here)")
def test_a_real_gpu_resolves() -> None:
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
