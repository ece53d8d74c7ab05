"""Flower's and Ray's usage telemetry is off in every process of the product."""

from __future__ import annotations

import importlib
import os

import pytest

from site_node import telemetry
from site_node.deployment import processes
from tests.child import printed_json


def test_importing_the_site_node_switches_telemetry_off_for_its_children() -> None:
    code = (
        "import os, json, sys\n"
        "os.environ['FLWR_TELEMETRY_ENABLED'] = '1'\n"
        "os.environ['RAY_USAGE_STATS_ENABLED'] = '1'\n"
        "import site_node\n"
        "from site_node.deployment import processes\n"
        "env = processes.tool_env()\n"
        "print(json.dumps({k: env.get(k) for k in "
        "('FLWR_TELEMETRY_ENABLED', 'RAY_USAGE_STATS_ENABLED')}))\n"
    )
    assert printed_json(code) == telemetry.SWITCHES


def test_flower_loaded_first_still_sends_nothing() -> None:
    """A ``flwr run`` by hand imports Flower's telemetry before our app: its flag is cleared."""
    code = (
        "import os, json\n"
        "os.environ.pop('FLWR_TELEMETRY_ENABLED', None)\n"
        "import flwr.supercore.telemetry as t\n"
        "before = t.FLWR_TELEMETRY_ENABLED\n"
        "import site_node\n"
        "print(json.dumps([before, t.FLWR_TELEMETRY_ENABLED, site_node.telemetry.is_off()]))\n"
    )
    assert printed_json(code) == ["1", "0", True]


def test_this_process_is_switched_off() -> None:
    assert telemetry.is_off()
    assert all(os.environ[k] == v for k, v in telemetry.SWITCHES.items())
    assert all(processes.tool_env()[k] == v for k, v in telemetry.SWITCHES.items())


def test_another_flower_is_refused_before_its_flag_is_touched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from site_node import flower_compat
    from site_node.errors import FlowerVersionError

    monkeypatch.setattr(flower_compat, "installed_version", lambda: "9.9")
    with pytest.raises(FlowerVersionError):
        flower_compat.clear_telemetry_flag()
    assert importlib.import_module(telemetry.FLOWER_TELEMETRY_MODULE).FLWR_TELEMETRY_ENABLED == "0"
