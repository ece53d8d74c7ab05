"""When the consortium stops: the classic federated algorithm's convergence check.

A run stops early when the mean site accuracy reaches a target, when it has not improved for a
number of rounds, or *before* a round that could take any site past its ε ceiling. The budget
projection is conservative: every round attempted so far (failed ones included, because sites
may have trained before secure aggregation halted) counts as spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from site_node.privacy import accountant
from site_node.protocol.mechanism import Mechanism

STOP_ROUNDS_DONE = "completed all planned rounds"
STOP_TARGET = "target accuracy reached"
STOP_PATIENCE = "no improvement"
STOP_BUDGET = "epsilon ceiling"


@dataclass
class ConvergenceCheck:
    """Early-stopping state over the rounds of one run.

    Parameters
    ----------
    target_accuracy : float or None
        Stop once the mean accuracy is at least this.
    patience : int or None
        Stop after this many consecutive rounds without an improvement above ``min_delta``.
    min_delta : float
        Smallest change that counts as an improvement.
    """

    target_accuracy: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    best: float = field(default=float("-inf"), init=False)
    stale_rounds: int = field(default=0, init=False)

    def observe(self, accuracy: float | None) -> str | None:
        """Take one round's mean accuracy; return why to stop, or None to go on."""
        if accuracy is None:
            self.stale_rounds += 1
        elif accuracy > self.best + self.min_delta:
            self.best, self.stale_rounds = accuracy, 0
        else:
            self.stale_rounds += 1
        if self.target_accuracy is not None and accuracy is not None and (
            accuracy >= self.target_accuracy
        ):
            return f"{STOP_TARGET} ({accuracy:.4f} >= {self.target_accuracy})"
        if self.patience is not None and self.stale_rounds >= self.patience:
            return f"{STOP_PATIENCE} for {self.stale_rounds} round(s)"
        return None


def budget_allows(
    *, mechanism: Mechanism, rounds_attempted: int, delta: float, ceiling: float
) -> tuple[bool, float]:
    """Whether one more round keeps a site within ``ceiling``; also the projected ε.

    The projection composes ``rounds_attempted + 1`` rounds of ``mechanism`` with the policy's
    accountant, through the one ε computation (:mod:`site_node.privacy.accountant`).
    """
    eps = accountant.projected([], mechanism, rounds_attempted + 1, delta=delta,
                               accountant=mechanism.accountant)
    return eps <= ceiling, eps
