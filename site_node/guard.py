"""The site's privacy guard: its own policy, its ledger and its receipt key around each round.

:meth:`SiteGuard.before_training` tightens the consortium's instruction by the site's own policy
and runs admission control (refusing before any training); :meth:`SiteGuard.after_training`
records the round in the site's ledger at once (before the update is returned, so a lost upload
is still counted) and signs the round's privacy receipt.

The site policy is ``<state dir>/policy.yaml`` if present, else the embedded example
``policies/sites/<site>.yaml`` if present, else none (the consortium's instruction as is).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np

from consortium import wire
from consortium.keys import SITE_KEY_FILE, load_or_create_key, site_state_dir
from consortium.receipt import Receipt, SignedReceipt, update_sha256
from policies.loader import LoadedSitePolicy, load_site_policy
from site_node.accounting import noise_for_target
from site_node.admission import Ceilings, admit_round
from site_node.ledger import SiteLedger
from site_node.training import TrainPlan, TrainResult

log = logging.getLogger(__name__)

SITE_POLICY_FILE = "policy.yaml"
DEFAULT_LIFETIME_CEILING = 10.0


def find_site_policy(site: str, state_dir: Path) -> LoadedSitePolicy | None:
    """The site's own policy file (state dir first, then the embedded example)."""
    own = state_dir / SITE_POLICY_FILE
    if own.is_file():
        return load_site_policy(own)
    embedded = Path(str(resources.files("policies") / "sites" / f"{site}.yaml"))
    return load_site_policy(embedded) if embedded.is_file() else None


@functools.lru_cache(maxsize=64)
def _noise_for(target: float, delta: float, sample_rate: float, steps: int, acct: str) -> float:
    return noise_for_target(target_epsilon=target, delta=delta, sample_rate=sample_rate,
                            steps=steps, accountant=acct)


class SiteGuard:
    """Enforces one site's policy and keeps its ledger and receipts.

    Parameters
    ----------
    site : str
        The site id.
    state_dir : Path
        The site's private state directory (ledger, receipt key, optional policy).
    """

    def __init__(self, site: str, state_dir: Path | None = None) -> None:
        self.site = site
        self.state_dir = Path(state_dir) if state_dir else site_state_dir(site)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.policy = find_site_policy(site, self.state_dir)
        if self.policy is not None and self.policy.policy.site != site:
            raise ValueError(f"{self.policy.source}: policy is for site "
                             f"{self.policy.policy.site!r}, not {site!r}")

    def tighten(self, plan: TrainPlan, rounds_planned: int) -> TrainPlan:
        """The consortium's plan, tightened (never loosened) by the site's policy."""
        if self.policy is None:
            return plan
        sp = self.policy.policy
        dp = sp.dp
        tight = replace(
            plan,
            delta=min(plan.delta, sp.delta or plan.delta),
            epsilon_ceiling=min(plan.epsilon_ceiling, sp.epsilon_ceiling or plan.epsilon_ceiling),
            noise_multiplier=max(plan.noise_multiplier, dp.noise_multiplier or 0.0),
            max_grad_norm=min(plan.max_grad_norm, dp.max_grad_norm or plan.max_grad_norm),
            sample_rate=min(plan.sample_rate, dp.sample_rate or plan.sample_rate),
            local_epochs=min(plan.local_epochs, dp.local_epochs or plan.local_epochs),
            accountant="rdp" if dp.accountant == "rdp" else plan.accountant,
        )
        if dp.target_epsilon is not None:
            target = min(dp.target_epsilon, tight.epsilon_ceiling)
            sigma = _noise_for(target, tight.delta, tight.sample_rate,
                               tight.steps * rounds_planned, tight.accountant)
            tight = replace(tight, noise_multiplier=max(tight.noise_multiplier, sigma))
        if tight != plan:
            log.info("site %s tightened the round's plan by its policy: %s", self.site, tight)
        return tight

    def lifetime_ceiling(self, config: Mapping[str, object]) -> float:
        """The lower of the consortium's and the site's lifetime ceilings."""
        given = config.get(wire.LIFETIME_EPSILON_CEILING)
        ceiling = float(given) if isinstance(given, int | float) else DEFAULT_LIFETIME_CEILING
        own = self.policy.policy.lifetime_epsilon_ceiling if self.policy else None
        return min(ceiling, own) if own is not None else ceiling

    def before_training(self, config: Mapping[str, object], plan: TrainPlan) -> TrainPlan:
        """Tighten the plan and admit the round; raises ``AdmissionRefused`` (nothing spent)."""
        rnd = int(config.get(wire.ROUND, 1))  # type: ignore[call-overload]
        planned = int(config.get(wire.ROUNDS_PLANNED, rnd))  # type: ignore[call-overload]
        tight = self.tighten(plan, planned)
        ceilings = Ceilings(delta=tight.delta, epsilon_ceiling=tight.epsilon_ceiling,
                            lifetime_epsilon_ceiling=self.lifetime_ceiling(config))
        with SiteLedger.in_state_dir(self.state_dir) as ledger:
            admit_round(ledger, site=self.site, run_id=str(config.get(wire.RUN_ID, "")),
                        rnd=rnd, rounds_planned=planned, mechanism=tight.mechanism,
                        ceilings=ceilings)
        return tight

    def after_training(
        self, config: Mapping[str, object], plan: TrainPlan, result: TrainResult,
        num_examples: int,
    ) -> dict[str, str]:
        """Record the trained round in the ledger, then sign its receipt (wire entries)."""
        run_id, rnd = str(config.get(wire.RUN_ID, "")), int(config.get(wire.ROUND, 1))  # type: ignore[call-overload]
        policy_sha = str(config.get(wire.POLICY_SHA256, ""))
        acct = result.mechanism.accountant
        with SiteLedger.in_state_dir(self.state_dir) as ledger:
            ledger.record(run_id=run_id, rnd=rnd, policy_sha256=policy_sha,
                          mechanism=result.mechanism, delta=plan.delta)
            run_eps = ledger.run_epsilon(run_id, plan.delta, accountant=acct)
            lifetime = ledger.lifetime_epsilon(plan.delta, accountant=acct)
        receipt = self._receipt(run_id, rnd, policy_sha, plan, result, num_examples,
                                run_eps, lifetime, self.lifetime_ceiling(config))
        return receipt.to_wire()

    def _receipt(
        self, run_id: str, rnd: int, policy_sha: str, plan: TrainPlan, result: TrainResult,
        num_examples: int, run_eps: float, lifetime: float, lifetime_ceiling: float,
    ) -> SignedReceipt:
        m = result.mechanism
        receipt = Receipt(
            run_id=run_id, round=rnd, site=self.site, policy_sha256=policy_sha,
            site_policy_sha256=self.policy.sha256 if self.policy else "",
            noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate, steps=m.steps,
            max_grad_norm=m.max_grad_norm, accountant=m.accountant, delta=plan.delta,
            epsilon=run_eps, lifetime_epsilon=lifetime, epsilon_ceiling=plan.epsilon_ceiling,
            lifetime_epsilon_ceiling=lifetime_ceiling, num_examples=int(num_examples),
            update_sha256=update_sha256([np.asarray(w) for w in result.weights]),
            issued_at=datetime.now(UTC).isoformat(),
        )
        key = load_or_create_key(self.state_dir / SITE_KEY_FILE)
        return receipt.sign(key)
