"""The server's Flower patches: the sites' masks in the SecAgg+ server workflow, and a clear
refusal on any Flower but the one they were written for."""

from __future__ import annotations

import importlib

import pytest

from consortium import flower_compat
from consortium.errors import FlowerVersionError
from site_node.protocol.masking import masks


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> object:
    """Flower's server workflow module with its own mask generator (restored afterwards)."""
    module = importlib.import_module(flower_compat.SERVER_MASK_MODULE)
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    monkeypatch.setattr(module, "pseudo_rand_gen", pseudo_rand_gen)
    return module


def test_install_masking_puts_the_sites_generator_into_the_server_workflow(
        unpatched: object) -> None:
    assert not flower_compat.masking_installed()
    flower_compat.install_masking()
    assert unpatched.pseudo_rand_gen is masks  # type: ignore[attr-defined]
    assert flower_compat.masking_installed()
    flower_compat.install_masking()  # idempotent
    assert flower_compat.masking_installed()


def test_another_flower_version_is_refused_naming_both(
    unpatched: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flower_compat, "version", lambda name: "1.99.0")
    with pytest.raises(FlowerVersionError) as err:
        flower_compat.install_masking()
    message = str(err.value)
    assert "1.42.0" in message and "1.99.0" in message and "flower_compat" in message
    assert not flower_compat.masking_installed()  # nothing was patched
    with pytest.raises(FlowerVersionError):
        flower_compat.pace_object_pulls()


def test_the_installed_flower_is_the_supported_one() -> None:
    flower_compat.check_version()
    assert flower_compat.FLWR_VERSION == "1.42.0"


def test_a_flower_without_the_patched_function_is_refused(
    unpatched: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(unpatched, "pseudo_rand_gen")
    with pytest.raises(FlowerVersionError, match="no pseudo_rand_gen"):
        flower_compat.install_masking()


def test_engine_of_tells_simulation_from_deployment() -> None:
    class InMemoryGrid:
        pass

    class GrpcGrid:
        pass

    assert flower_compat.engine_of(InMemoryGrid()) == "simulation"
    assert flower_compat.engine_of(GrpcGrid()) == "deployment"


def test_the_server_paces_its_object_pulls_with_the_sites_patch() -> None:
    import importlib

    from site_node import flower_compat as site_flower_compat

    module = importlib.import_module(site_flower_compat.INFLATABLE_MODULE)
    saved = module.pull_objects.__kwdefaults__["initial_backoff"]
    try:
        for name in ("pull_objects", "pull_and_inflate_object_from_tree"):  # Flower's own wait,
            getattr(module, name).__kwdefaults__["initial_backoff"] = (  # whatever ran before
                module.PULL_INITIAL_BACKOFF)
        assert site_flower_compat.object_pull_first_wait() != (
            site_flower_compat.OBJECT_PULL_FIRST_WAIT_S)
        flower_compat.pace_object_pulls()
        assert site_flower_compat.object_pull_first_wait() == (
            site_flower_compat.OBJECT_PULL_FIRST_WAIT_S)
    finally:
        for name in ("pull_objects", "pull_and_inflate_object_from_tree"):
            getattr(module, name).__kwdefaults__["initial_backoff"] = saved
