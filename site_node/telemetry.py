"""Vendor usage telemetry, switched off in every process of the product.

By default Flower reports usage events to ``telemetry.flower.ai`` (event type, platform, CPU
count, and a machine id it keeps in ``~/.flwr/source``) from every process it runs, SuperNodes
inside hospitals included, and Ray reports cluster usage statistics. Neither is in the
threat model's list of what leaves a site, so importing :mod:`site_node` (which every part of
the product does) calls :func:`switch_off`: the documented environment variables are set for
this process and every process it starts, and Flower's flag is also cleared in a process where
Flower's telemetry module was loaded before ours (a ``flwr run`` started by hand; that touch of
Flower's internals is :func:`site_node.flower_compat.clear_telemetry_flag`).
"""

from __future__ import annotations

import os
import sys

#: Environment variables that switch the vendors' telemetry off, and their value.
SWITCHES: dict[str, str] = {"FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"}
#: Flower's telemetry module (its flag is cleared by :mod:`site_node.flower_compat`).
FLOWER_TELEMETRY_MODULE = "flwr.supercore.telemetry"


def switch_off() -> None:
    """Switch Flower's and Ray's telemetry off for this process and its children."""
    os.environ.update(SWITCHES)
    if FLOWER_TELEMETRY_MODULE in sys.modules:  # it read the variable once, at its import
        from site_node import flower_compat  # not at the top: it loads NumPy

        flower_compat.clear_telemetry_flag()


def is_off() -> bool:
    """Whether this process has the switches set (and Flower's flag cleared, if loaded)."""
    loaded = sys.modules.get(FLOWER_TELEMETRY_MODULE)
    flag = getattr(loaded, "FLWR_TELEMETRY_ENABLED", "0") if loaded is not None else "0"
    return all(os.environ.get(k) == v for k, v in SWITCHES.items()) and flag == "0"
