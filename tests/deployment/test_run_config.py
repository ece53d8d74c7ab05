"""The Flower run config: one set of keys (site_node.protocol.run_config) for both sides.

The server's plan and a demonstration node read the same keys with the same defaults, so a
demonstration of another example (``demo=true example=digits``) plays that example's sites.
"""

from __future__ import annotations

from flwr.app import Context, RecordDict

from consortium.run.plan import plan_from_run_config
from policies.example import load_example
from site_node.client_app import PARTITION_ID, resolve_settings


def context(pid: int, run_config: dict[str, object]) -> Context:
    return Context(run_id=1, node_id=1, node_config={PARTITION_ID: pid},
                   state=RecordDict(), run_config=run_config)  # type: ignore[arg-type]


def test_a_demo_of_the_digits_example_plays_its_sites_on_both_sides() -> None:
    config: dict[str, object] = {"demo": True, "example": "digits"}
    digits = load_example("digits")
    plan = plan_from_run_config(config)  # type: ignore[arg-type]
    assert plan.loaded.policy.sites == digits.sites
    played = [resolve_settings(context(i, config), None) for i in range(len(digits.sites))]
    assert [s.site for s in played] == list(plan.loaded.policy.sites)
    assert [s.data_path for s in played] == [digits.data[s] for s in digits.sites]
