"""The site's Flower patches: installed into the client mod, and only on the Flower they were
written for."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterator

import pytest

from site_node import flower_compat
from site_node.errors import FlowerVersionError
from site_node.protocol.masking import masks
from tests.child import printed_json


def test_installed_flower_is_the_version_the_patches_were_written_for() -> None:
    installed = importlib.metadata.version("flwr")
    assert installed == flower_compat.FLWR_VERSION, (
        f"flwr {installed} is installed but site_node/flower_compat.py patches Flower "
        f"{flower_compat.FLWR_VERSION} internals: review the patches (client mask generator, "
        "SuperExec executor) against the new release, then update FLWR_VERSION"
    )
    flower_compat.check_version()


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> object:
    """Flower's client mod with its own mask generator and another masked-vector step,
    whatever an earlier test installed in this process (restored afterwards)."""
    module = importlib.import_module(flower_compat.CLIENT_MASK_MODULE)
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    monkeypatch.setattr(module, "pseudo_rand_gen", pseudo_rand_gen)
    monkeypatch.setattr(module, "_collect_masked_vectors", lambda *args: {})  # not ours
    return module


def test_masking_installs_into_flowers_client_mod(unpatched: object) -> None:
    assert not flower_compat.masking_installed()
    flower_compat.install_masking()
    flower_compat.install_masking()  # idempotent
    assert flower_compat.masking_installed()
    assert unpatched.pseudo_rand_gen is masks  # type: ignore[attr-defined]
    assert unpatched._collect_masked_vectors is flower_compat.collect_masked_vectors  # type: ignore[attr-defined]


def test_the_client_app_installs_masking_on_import() -> None:
    # A fresh interpreter: in this one an earlier test may have installed it already.
    installed = printed_json(
        "import json\n"
        "from site_node import flower_compat\n"
        "before = flower_compat.masking_installed()\n"
        "import site_node.client_app\n"
        "print(json.dumps([before, flower_compat.masking_installed()]))")
    assert installed == [False, True]


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


@pytest.mark.parametrize("name", ["pseudo_rand_gen", "_collect_masked_vectors"])
def test_a_client_mod_without_the_patched_function_is_refused(
        unpatched: object, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delattr(unpatched, name)
    with pytest.raises(FlowerVersionError, match=f"no {name}"):
        flower_compat.install_masking()
    assert not flower_compat.masking_installed()


@pytest.fixture
def flower_defaults() -> Iterator[object]:
    """Restore Flower's object-pull waits and ClientApp installer after a test."""
    module = importlib.import_module(flower_compat.INFLATABLE_MODULE)
    saved = {name: dict(getattr(module, name).__kwdefaults__)
             for name in ("pull_objects", "pull_and_inflate_object_from_tree")}
    for name in saved:  # Flower's own first wait, whatever ran before in this process
        getattr(module, name).__kwdefaults__["initial_backoff"] = module.PULL_INITIAL_BACKOFF
    runtime = importlib.import_module(flower_compat.CLIENTAPP_MODULE)
    installer = runtime.install_from_fab
    yield module
    for name, defaults in saved.items():
        getattr(module, name).__kwdefaults__.update(defaults)
    runtime.install_from_fab = installer


def test_object_pulls_are_paced_and_only_their_first_wait_changes(flower_defaults: object
                                                                   ) -> None:
    module = importlib.import_module(flower_compat.INFLATABLE_MODULE)
    before = dict(module.pull_objects.__kwdefaults__)
    assert before["initial_backoff"] == module.PULL_INITIAL_BACKOFF == 1.0  # Flower's own wait
    flower_compat.pace_object_pulls()
    flower_compat.pace_object_pulls()  # idempotent
    after = module.pull_objects.__kwdefaults__
    assert flower_compat.object_pull_first_wait() == flower_compat.OBJECT_PULL_FIRST_WAIT_S
    assert module.pull_and_inflate_object_from_tree.__kwdefaults__["initial_backoff"] == (
        flower_compat.OBJECT_PULL_FIRST_WAIT_S)
    assert {k: v for k, v in after.items() if k != "initial_backoff"} == {
        k: v for k, v in before.items() if k != "initial_backoff"}


def test_object_pulls_without_the_argument_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(flower_compat.INFLATABLE_MODULE)
    monkeypatch.setattr(module, "pull_objects", lambda **_: None)
    with pytest.raises(FlowerVersionError, match="no initial_backoff"):
        flower_compat.pace_object_pulls()


def test_an_installed_bundle_is_reused_by_its_full_hash(flower_defaults: object, tmp_path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = importlib.import_module(flower_compat.CLIENTAPP_MODULE)
    calls: list[bytes] = []

    def flower_install(fab: object, install_dir: object = None, skip_prompt: bool = False
                       ) -> object:
        assert isinstance(fab, bytes)
        calls.append(fab)
        target = tmp_path / "apps" / f"app-{len(calls)}"
        target.mkdir(parents=True)
        return target

    monkeypatch.setattr(runtime, "install_from_fab", flower_install)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    flower_compat.reuse_installed_fab()
    flower_compat.reuse_installed_fab()  # idempotent: wraps once
    assert flower_compat.fab_reuse_installed()
    install = runtime.install_from_fab
    first = install(b"bundle one", skip_prompt=True)
    assert install(b"bundle one", skip_prompt=True) == first  # reused, not installed again
    other = install(b"bundle two", skip_prompt=True)  # another hash goes through Flower
    assert other != first and calls == [b"bundle one", b"bundle two"]
    first.rmdir()  # an installed folder that is gone is installed again
    assert install(b"bundle one", skip_prompt=True) != first and len(calls) == 3


def test_a_bundle_with_a_prompt_always_goes_through_flower(flower_defaults: object, tmp_path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = importlib.import_module(flower_compat.CLIENTAPP_MODULE)
    calls: list[object] = []

    def flower_install(fab: object, install_dir: object = None, skip_prompt: bool = False
                       ) -> object:
        calls.append(fab)
        return tmp_path

    monkeypatch.setattr(runtime, "install_from_fab", flower_install)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    flower_compat.reuse_installed_fab()
    runtime.install_from_fab(b"x")
    runtime.install_from_fab(b"x")
    assert calls == [b"x", b"x"]


def test_the_supernode_loop_is_paced_and_its_idle_wait_grows_with_idle_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    module = importlib.import_module(flower_compat.SUPERNODE_LOOP_MODULE)
    monkeypatch.setattr(module, "time", time)  # Flower's own, whatever ran before
    flower_compat.pace_supernode()
    flower_compat.pace_supernode()  # idempotent
    clock = module.time
    assert isinstance(clock, flower_compat._PacedClock)
    assert clock.monotonic is time.monotonic  # everything but sleep is the time module's
    now, slept = [100.0], []
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", slept.append)
    clock.sleep(3)  # Flower's idle wait, right after a message: short
    now[0] += 2.0
    clock.sleep(3)  # idle for 2 s: longer
    now[0] += 60.0
    clock.sleep(3)  # long idle: capped
    clock.sleep(0.5)  # waiting for a reply: a message came; the idle time starts again
    clock.sleep(3)
    assert slept == [flower_compat.IDLE_POLL_S, pytest.approx(2.0 * flower_compat.IDLE_BACKOFF),
                     flower_compat.IDLE_POLL_MAX_S,
                     flower_compat.WAIT_POLL_S, flower_compat.IDLE_POLL_S]
    assert flower_compat.IDLE_POLL_S < 2.0 * flower_compat.IDLE_BACKOFF < (
        flower_compat.IDLE_POLL_MAX_S) < 3


def test_a_supernode_loop_without_its_time_module_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(flower_compat.SUPERNODE_LOOP_MODULE)
    monkeypatch.setattr(module, "time", object())
    with pytest.raises(FlowerVersionError, match="no longer sleeps through `time`"):
        flower_compat.pace_supernode()
