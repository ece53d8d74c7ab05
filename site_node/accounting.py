"""A site's cumulative privacy accountant.

One :class:`SiteAccountant` holds every DP-SGD event a site has run in a run, as Opacus
accountant history entries ``(noise_multiplier, sample_rate, steps)``. It is saved to the node's
state after every round and restored before the next one, so ε is always cumulative: a fresh
Opacus ``PrivacyEngine`` is created per round, but its accountant is loaded with this history
first and read back after training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from opacus.accountants import create_accountant
from opacus.accountants.accountant import IAccountant

ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class Mechanism:
    """DP-SGD parameters of one round of local training (a Poisson-subsampled Gaussian).

    Attributes
    ----------
    noise_multiplier : float
        Noise standard deviation divided by the clipping norm.
    sample_rate : float
        Poisson sampling probability of each record per step.
    steps : int
        Number of noisy gradient steps in the round.
    max_grad_norm : float
        Per-sample clipping norm.
    accountant : str
        Name of the Opacus accountant (``"rdp"`` or ``"prv"``).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str

    def __post_init__(self) -> None:
        if self.noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")

    @property
    def event(self) -> tuple[float, float, int]:
        """The Opacus history entry for this round."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


class SiteAccountant:
    """Cumulative ε of one site, composed by a real Opacus accountant.

    Parameters
    ----------
    accountant : str
        ``"rdp"`` or ``"prv"``.
    history : sequence of (noise_multiplier, sample_rate, steps)
        Events already spent, oldest first.
    """

    def __init__(
        self, *, accountant: str, history: list[tuple[float, float, int]] | None = None
    ) -> None:
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
        self.accountant = accountant
        self._history: list[tuple[float, float, int]] = [
            (float(s), float(q), int(n)) for s, q, n in (history or [])
        ]

    @property
    def history(self) -> list[tuple[float, float, int]]:
        """A copy of the events spent so far."""
        return list(self._history)

    def opacus_accountant(self) -> IAccountant:
        """A fresh Opacus accountant loaded with this history."""
        acc = create_accountant(self.accountant)
        acc.history = self.history
        return acc

    def epsilon(self, delta: float) -> float:
        """Cumulative ε at ``delta`` over every event so far (0.0 before any)."""
        if not self._history:
            return 0.0
        return float(self.opacus_accountant().get_epsilon(delta=delta))

    def projected_epsilon(self, mechanism: Mechanism, delta: float) -> float:
        """The cumulative ε if ``mechanism`` were spent next (nothing is recorded)."""
        trial = SiteAccountant(accountant=self.accountant, history=self._history)
        trial.record(mechanism)
        return trial.epsilon(delta)

    def record(self, mechanism: Mechanism) -> None:
        """Add one round's DP-SGD work to the history."""
        if mechanism.accountant != self.accountant:
            raise ValueError(
                f"mechanism accountant {mechanism.accountant!r} != site accountant "
                f"{self.accountant!r}"
            )
        self._history.append(mechanism.event)

    def steps_added_by(self, accountant: IAccountant) -> int:
        """How many steps an Opacus accountant that started from this history has taken since.

        Opacus merges consecutive steps with equal (σ, q) into one history entry, so the count
        is the difference in total steps; the loaded history must still be its prefix.
        """
        spent = sum(n for _, _, n in self._history)
        total = sum(int(n) for _, _, n in accountant.history)
        if total < spent:
            raise ValueError("the Opacus accountant lost part of this site's history")
        return total - spent

    def to_json(self) -> str:
        """Serialise for the node's state."""
        return json.dumps({"accountant": self.accountant, "history": self._history})

    @classmethod
    def from_json(cls, text: str) -> SiteAccountant:
        """Restore from :meth:`to_json` output."""
        data = json.loads(text)
        return cls(accountant=data["accountant"], history=[tuple(h) for h in data["history"]])


def noise_for_target(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose ε over ``steps``
    stays below ``target_epsilon``."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
            steps=steps, accountant=accountant, epsilon_tolerance=0.005,
        )
    )
