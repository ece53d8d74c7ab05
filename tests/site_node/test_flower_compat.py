"""The site's Flower patches: installed into the client mod, and only on the Flower they were
written for."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

from site_node import flower_compat
from site_node.errors import FlowerVersionError
from site_node.protocol.masking import chacha20_masks


def test_installed_flower_is_the_version_the_patches_were_written_for() -> None:
    installed = importlib.metadata.version("flwr")
    assert installed == flower_compat.FLWR_VERSION, (
        f"flwr {installed} is installed but site_node/flower_compat.py patches Flower "
        f"{flower_compat.FLWR_VERSION} internals: review the patches (client mask generator, "
        "SuperExec executor) against the new release, then update FLWR_VERSION"
    )
    flower_compat.check_version()


def test_masking_installs_into_flowers_client_mod() -> None:
    flower_compat.install_masking()
    flower_compat.install_masking()  # idempotent
    assert flower_compat.masking_installed()
    module = importlib.import_module(flower_compat.CLIENT_MASK_MODULE)
    assert module.pseudo_rand_gen is chacha20_masks


def test_the_client_app_installs_masking_on_import() -> None:
    import site_node.client_app  # noqa: F401

    assert flower_compat.masking_installed()


def test_another_flower_version_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flower_compat, "installed_version", lambda: "9.9")
    with pytest.raises(FlowerVersionError) as info:
        flower_compat.check_version()
    msg = str(info.value)
    assert "9.9" in msg and flower_compat.FLWR_VERSION in msg
    with pytest.raises(FlowerVersionError):
        flower_compat.install_masking()
    with pytest.raises(FlowerVersionError):
        flower_compat.run_superexec_with(object(), "127.0.0.1:1", None)


def test_a_client_mod_without_the_generator_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(flower_compat.CLIENT_MASK_MODULE)
    monkeypatch.delattr(module, "pseudo_rand_gen")
    with pytest.raises(FlowerVersionError, match="no pseudo_rand_gen"):
        flower_compat.install_masking()
    assert not flower_compat.masking_installed()
