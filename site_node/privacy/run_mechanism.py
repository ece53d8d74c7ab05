"""The mechanism a consortium policy runs at every site, and its noise multiplier.

One source for the consortium's run plan and for ``site-node check-data``: with a target ε, σ is
derived (by the policy's accountant) so that the planned rounds spend at most that ε at the
policy's δ; otherwise it is the policy's σ.
"""

from __future__ import annotations

from policies.schema import ConsortiumPolicy
from site_node.privacy.accountant import noise_for_target
from site_node.protocol.mechanism import Mechanism


def run_noise_multiplier(policy: ConsortiumPolicy, rounds: int) -> float:
    """σ of every round of a run of ``rounds`` rounds under ``policy``."""
    dp = policy.dp
    if dp.noise_multiplier is not None:
        return float(dp.noise_multiplier)
    assert dp.target_epsilon is not None  # the schema guarantees one of them
    return noise_for_target(target_epsilon=float(dp.target_epsilon), delta=policy.delta,
                            sample_rate=float(dp.sample_rate),
                            steps=dp.steps_per_round * rounds, accountant=dp.accountant)


def round_mechanism(policy: ConsortiumPolicy, rounds: int, *, unit: str = "record"
                    ) -> Mechanism:
    """One round's mechanism at a site under ``policy`` in a run of ``rounds`` rounds."""
    dp = policy.dp
    return Mechanism(noise_multiplier=run_noise_multiplier(policy, rounds),
                     sample_rate=float(dp.sample_rate), steps=dp.steps_per_round,
                     max_grad_norm=float(dp.max_grad_norm), accountant=dp.accountant, unit=unit)
