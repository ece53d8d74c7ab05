"""The local demonstration: one machine plays every hospital of a consortium.

Each demonstration site is a real site home (keys, state, ledger) under
``<site home>/demo/<site>`` (:func:`site_node.home.demo_site_home`), provisioned once with the
same code as ``site-node init``. Its data is the file the coordinator gives for it (the
example's file for that site, or ``consortium run --data SITE=PATH``), and its own policy is the
repository's example site policy only when the coordinator asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from policies.errors import PolicyError
from policies.example import DEFAULT_EXAMPLE, Example, load_example
from policies.loader import example_site_policy_path
from site_node.device import AUTO
from site_node.errors import ConfigError
from site_node.home import SiteHome, demo_site_home, ensure_site_home
from site_node.protocol.run_config import RunConfig, parse
from site_node.settings import NodeSettings


def provision(site: str) -> SiteHome:
    """The demonstration site's home, created (with fresh keys) if it does not exist yet."""
    return ensure_site_home(demo_site_home(site), site)


def demo_settings(site: str, *, data_path: Path | None = None,
                  example_policy: bool = False, device: str = AUTO) -> NodeSettings:
    """The node settings of a demonstration site (its home must have been provisioned),
    training on ``device``."""
    home = SiteHome(demo_site_home(site), site)
    policy = example_site_policy_path(site) if example_policy else None
    if policy is not None and not policy.is_file():
        policy = None  # this site has no example policy
    return NodeSettings(site=site, data_path=data_path, state_dir=home.state_dir,
                        policy_path=policy, device=device)


def run_example(run_config: RunConfig) -> Example:
    """The embedded example a run config names (default: heart disease)."""
    try:
        return load_example(run_config.example or DEFAULT_EXAMPLE)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def run_policy_path(run_config: RunConfig) -> Path:
    """The consortium policy a run config names: its ``policy``, else its example's. The server's
    plan and the demonstration nodes both resolve it here."""
    return Path(run_config.policy) if run_config.policy else run_example(run_config).policy


def partition_site(partition_id: int, run_config: Mapping[str, object]) -> str:
    """The site a simulated node plays under ``flwr run`` in demonstration mode: the
    ``partition_id``-th member of the run's policy (:func:`run_policy_path`)."""
    from policies.loader import load_policy

    sites = load_policy(run_policy_path(parse(run_config))).policy.sites
    if not 0 <= partition_id < len(sites):
        raise ConfigError(f"simulated node {partition_id} has no site: the policy has "
                          f"{len(sites)} members ({', '.join(sites)})")
    return sites[partition_id]


def example_data(site: str, run_config: Mapping[str, object]) -> Path:
    """The data file a simulated node plays under ``flwr run`` in demonstration mode: the site's
    file in the run config's ``example`` (default: the heart-disease example)."""
    example = run_example(parse(run_config))
    if site not in example.data:
        raise ConfigError(f"site {site} has no data in example {example.name} (its sites: "
                          f"{', '.join(example.sites)})")
    return example.data[site]
