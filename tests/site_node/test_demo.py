"""The local demonstration: real site homes per played site; example policies only on request."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from policies.loader import example_site_policy_path
from site_node.client_app import PARTITION_ID, resolve_settings
from site_node.demo import demo_settings, partition_site, provision
from site_node.errors import ConfigError
from site_node.home import demo_site_home, load_site_home
from site_node.settings import NODE_SITE_ID, NODE_STATE_DIR, NodeSettings


def test_provision_makes_one_real_home_per_site_once() -> None:
    home = provision("hungary")
    assert home.root == demo_site_home("hungary") and home.receipt_key.is_file()
    assert load_site_home(home.root) == home
    key = home.receipt_key.read_bytes()
    assert provision("hungary") == home and home.receipt_key.read_bytes() == key


def test_example_policies_only_when_asked() -> None:
    plain = demo_settings("cleveland")
    assert plain.policy_path is None and plain.data_path is None
    assert plain.state_dir == demo_site_home("cleveland") / "state"
    assert demo_settings("cleveland", example_policy=True).policy_path == \
        example_site_policy_path("cleveland")
    assert demo_settings("mayo", example_policy=True).policy_path is None  # has no example


def test_partition_site_follows_the_policys_members(tmp_path: Path) -> None:
    assert [partition_site(i, {}) for i in range(4)] == [
        "cleveland", "hungary", "long_beach", "switzerland"]
    with pytest.raises(ConfigError, match="simulated node 4 has no site"):
        partition_site(4, {})


def context(node_config: dict[str, object], run_config: dict[str, object] | None = None
            ) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config,  # type: ignore[arg-type]
                   state=RecordDict(), run_config=run_config or {})  # type: ignore[arg-type]


def test_a_node_gets_its_identity_from_its_own_config_or_the_demo(tmp_path: Path) -> None:
    sites = [NodeSettings(site="hungary", data_path=None, state_dir=tmp_path)]
    assert resolve_settings(context({PARTITION_ID: 0}), sites) is sites[0]
    with pytest.raises(ConfigError, match="simulated node 1 has no site"):
        resolve_settings(context({PARTITION_ID: 1}), sites)
    own = resolve_settings(context({NODE_SITE_ID: "cleveland", NODE_STATE_DIR: "/s"}), None)
    assert own.site == "cleveland"
    with pytest.raises(ConfigError, match="demo=true"):
        resolve_settings(context({PARTITION_ID: 1}), None)
    demo = resolve_settings(context({PARTITION_ID: 1}, {"demo": True}), None)
    assert demo.site == "hungary" and demo.policy_path is None
    with_examples = resolve_settings(
        context({PARTITION_ID: 0}, {"demo": True, "example-site-policies": True}), None)
    assert with_examples.policy_path == example_site_policy_path("cleveland")
