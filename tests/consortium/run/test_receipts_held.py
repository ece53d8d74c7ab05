"""The fit instruction tells each site the rounds of the run whose receipts the consortium holds
from it (issue 14): a site resumed with another site home refuses instead of training."""

from __future__ import annotations

from consortium.run.plan import make_plan
from consortium.run.server import instruction_config, receipts_held
from consortium.store.records import ROUND_OK, RoundRecord
from consortium.store.records import SiteRoundRecord as Site
from site_node.instruction import parse_instruction


def _round(n: int, *sites: Site) -> RoundRecord:
    return RoundRecord(round=n, status=ROUND_OK, started_at="t", finished_at="t",
                       duration_s=1.0, accuracy_mean=0.8, policy_sha256="ab" * 32, sites=sites)


def test_the_instruction_carries_each_sites_rounds_with_a_verified_receipt() -> None:
    done = [
        _round(1, Site(site="cleveland", epsilon=0.1, trained=True),
               Site(site="hungary", refusal="budget")),
        _round(2, Site(site="cleveland", epsilon=0.2, trained=True),
               Site(site="hungary", epsilon=0.1)),  # a receipt re-sent after an interruption
    ]
    assert receipts_held(done) == (("cleveland", (1, 2)), ("hungary", (2,)))
    plan = make_plan(rounds=4, run_id="run-x")
    ins = parse_instruction(instruction_config(plan, 3, done))
    assert ins.held_rounds("cleveland") == (1, 2) and ins.held_rounds("hungary") == (2,)
    assert ins.held_rounds("switzerland") == ()
    assert parse_instruction(instruction_config(plan, 1, [])).receipts_held == ()
