"""A node's settings, parsed once from its own configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from site_node.errors import ConfigError
from site_node.settings import (
    NODE_DATA_PATH,
    NODE_DEVICE,
    NODE_FEATURES_DIR,
    NODE_MAX_PHYSICAL_BATCH,
    NODE_POLICY_PATH,
    NODE_SITE_ID,
    NODE_STATE_DIR,
    NodeSettings,
    features_folder,
    settings_from_node_config,
)


def test_settings_round_trip_through_the_node_config(tmp_path: Path) -> None:
    s = NodeSettings(site="hungary", data_path=tmp_path / "d.csv", state_dir=tmp_path / "s",
                     policy_path=tmp_path / "p.yaml")
    assert settings_from_node_config(s.node_config()) == s
    bare = NodeSettings(site="hungary", data_path=None, state_dir=tmp_path / "s")
    assert set(bare.node_config()) == {NODE_SITE_ID, NODE_STATE_DIR}
    assert settings_from_node_config(bare.node_config()) == bare
    blank = {**bare.node_config(), NODE_DATA_PATH: "", NODE_POLICY_PATH: ""}
    assert settings_from_node_config(blank) == bare


@pytest.mark.parametrize(("config", "match"), [
    ({NODE_STATE_DIR: "/s"}, "no site identity"),
    ({NODE_SITE_ID: "../x", NODE_STATE_DIR: "/s"}, "invalid site id"),
    ({NODE_SITE_ID: "Hungary", NODE_STATE_DIR: "/s"}, "invalid site id"),
    ({NODE_SITE_ID: 5, NODE_STATE_DIR: "/s"}, "invalid site id"),
    ({NODE_SITE_ID: "hungary"}, "lacks 'state-dir'"),
    ({NODE_SITE_ID: "hungary", NODE_STATE_DIR: ""}, "lacks 'state-dir'"),
    ({NODE_SITE_ID: "hungary", NODE_STATE_DIR: 3}, "expected a path"),
])
def test_bad_node_configs_are_config_errors(config: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        settings_from_node_config(config)


def test_the_device_and_physical_batch_round_trip(tmp_path: Path) -> None:
    s = NodeSettings(site="hungary", data_path=None, state_dir=tmp_path, device="cuda:1",
                     max_physical_batch=32)
    assert s.node_config()[NODE_DEVICE] == "cuda:1"
    assert settings_from_node_config(s.node_config()) == s
    as_int = {**s.node_config(), NODE_MAX_PHYSICAL_BATCH: 32}  # a TOML number in --node-config
    assert settings_from_node_config(as_int) == s
    assert NodeSettings(site="hungary", data_path=None, state_dir=tmp_path).device == "auto"


@pytest.mark.parametrize(("key", "value", "match"), [
    (NODE_DEVICE, "gpu", "node config device: 'gpu' is not a device"),
    (NODE_DEVICE, "cuda:x", "node config device: 'cuda:x' is not a device"),
    (NODE_DEVICE, 1, "node config device: 1 is not a device"),
    (NODE_MAX_PHYSICAL_BATCH, "0", "max-physical-batch: expected a whole number"),
    (NODE_MAX_PHYSICAL_BATCH, "1e3", "max-physical-batch: expected a whole number"),
    (NODE_MAX_PHYSICAL_BATCH, "٥٥", "max-physical-batch: expected a whole number"),
    (NODE_MAX_PHYSICAL_BATCH, True, "max-physical-batch: expected a whole number"),
    (NODE_MAX_PHYSICAL_BATCH, -4, "max-physical-batch: expected a whole number"),
])
def test_a_bad_device_or_physical_batch_is_a_config_error_naming_the_key(
        key: str, value: object, match: str) -> None:
    config = {NODE_SITE_ID: "hungary", NODE_STATE_DIR: "/s", key: value}
    with pytest.raises(ConfigError, match=match):
        settings_from_node_config(config)


def test_the_features_folder_round_trips_through_the_node_config(tmp_path: Path) -> None:
    s = NodeSettings(site="hungary", data_path=tmp_path / "d.npz", state_dir=tmp_path / "s",
                     features_dir=tmp_path / "models")
    assert s.node_config()[NODE_FEATURES_DIR] == str(tmp_path / "models")
    assert settings_from_node_config(s.node_config()) == s
    bare = NodeSettings(site="hungary", data_path=None, state_dir=tmp_path / "s")
    assert NODE_FEATURES_DIR not in bare.node_config() and bare.features_dir is None
    assert settings_from_node_config({**bare.node_config(), NODE_FEATURES_DIR: ""}) == bare
    with pytest.raises(ConfigError, match="node config features-dir: expected a path"):
        settings_from_node_config({**bare.node_config(), NODE_FEATURES_DIR: 3})


def test_a_features_folder_is_resolved_and_must_be_a_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    assert features_folder("models") == tmp_path / "models"  # relative: from here
    gone = f"--features-dir: no such folder: {tmp_path / 'gone'}"
    with pytest.raises(ConfigError, match=re.escape(gone)):
        features_folder("gone", field="--features-dir")
    (tmp_path / "backbone.pt").write_bytes(b"")
    a_file = f"features-dir: not a folder: {tmp_path / 'backbone.pt'}"
    with pytest.raises(ConfigError, match=re.escape(a_file)):
        features_folder(tmp_path / "backbone.pt")
